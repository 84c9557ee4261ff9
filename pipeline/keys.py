"""Every key the pipeline writes into Optuna and MLflow, named once.

Who writes what, once: Optuna's trial user attributes hold what the study itself needs (the complete
hyperparameters, the trial's MLflow run, which process runs it, why it failed); MLflow holds the results
(curves, test metrics, epochs run, the model). Readers go to that one place.
"""

# Optuna: study user attributes
SWEEP_FILE = "sweep_file"  # the sweep file's text, so `--study NAME` commands can run without it
DATA = "data"  # {"data_dir": the folder as run (relative to the sweep file's folder when inside it), "digest"}
BUILDER = "builder"  # model.builder's {"file": as the sweep file names it, "path": absolute, "function", "digest"}
PARENT_RUN_ID = "mlflow_parent_run_id"  # the study's MLflow parent run, found by id wherever the store moves
STORED_AT = "storage"  # stores.identity of the storage when the study last ran, to tell that it moved
WARM_START = "warm_start"  # where study.warm_start took its first trials: study, storage, trials with values

# Optuna: trial user attributes
PARAMS = "hyperparameters"  # the complete set, searched and fixed
RUN_ID = "mlflow_run_id"
HOST, PID = "host", "pid"  # the process running the trial, so a dead one can be told from a live one
HEARTBEATS = "heartbeats"  # where the trial's process keeps its heartbeats (pipeline.storages.heartbeats_kept_in)
ERROR = "error"
# ... and a confirmation's retraining (pipeline.confirmation): the search trial it repeats, with which seed
SOURCE_TRIAL, REPEAT, SEED, SOURCE_RUN_ID = "source_trial", "repeat", "seed", "source_run_id"
# ... and what the served model costs (pipeline.measure); how far it misses each limit is Optuna's own
# trial constraint, named as the sweep file names the limit (max_params, max_latency_ms, max_model_mb)
MEASUREMENTS = "measurements"

# Optuna: trial system attributes
HEARTBEAT = "sweep:heartbeat"  # through a storage proxy, the time.time() a running trial last said it is alive

# MLflow: run tags
ROLE = "sweep.role"  # parent | trial | confirmation | export
STUDY = "sweep.study"
STORAGE = "sweep.study_storage"  # stores.identity of the study's storage: a study is its name in its storage
TRIAL = "sweep.trial_number"
STATE = "sweep.trial_state"  # COMPLETE | PRUNED | FAIL (the Optuna state; run status says FINISHED/KILLED/FAILED)
RUN_ERROR = "sweep.error"
SOURCE_RUN = "sweep.source_run_id"  # the trial run an export or a confirmation's retraining comes from
REPEAT_TAG, SEED_TAG = "sweep.repeat", "sweep.seed"  # a retraining's repeat (1..seeds-1) and training seed
RUN_HOST, RUN_PID = "sweep.host", "sweep.pid"  # the process writing an export run
REFIT = "sweep.refit"
BEST_TRIAL, BEST_VALUE, BEST_RUN = "sweep.best_trial_number", "sweep.best_value", "sweep.best_run_id"
SETTING_PREFIX = "sweep."  # the parent's study and data settings, e.g. sweep.sampler
EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow 3's UI opens model-training experiments on their runs
MODEL_TRAINING_KIND = "custom_model_development"

# MLflow: run metrics a trial logs besides its per-epoch curves
TEST_ACCURACY, TEST_LOSS, EPOCHS_RUN, PEAK_RSS_MB = "test_accuracy", "test_loss", "epochs_run", "peak_rss_mb"
TEST_RMSE, TEST_MAE, TEST_R2 = "test_rmse", "test_mae", "test_r2"  # regression, in the label's units
KEPT_EPOCH = "kept_epoch"  # restore_best: the epoch whose weights the trial's model ended with
# ... and the served model's costs, measured on this machine's CPU
PARAMS_COUNT, MODEL_BYTES, MODEL_MB = "params_count", "model_bytes", "model_mb"
LATENCY_B1, LATENCY_B256, LATENCY_THREADS = "latency_ms_batch1", "latency_ms_batch256", "latency_threads"
FEASIBLE = "sweep.feasible"  # MLflow tag: "false" when a trial's model breaks the study's constraints

# MLflow: artifact paths and registry names
MODEL = "model"
CLASS_NAMES = "class_names"  # in a logged model's metadata
PLOTS = "plots"
SWEEP_DIR = "sweep"
BUILDER_DIR = "builder"  # the source of a user's builder, on the parent run and on every trial run
CONFIRMATION_DIR = "confirmation"  # the parent run's confirmation table
VERDICT_DIR = "verdict"  # the parent run's "is my sweep done?" text and plot
CHAMPION = "champion"
