"""Bench row k: this pipeline against the tools a user would reach for instead, on one budget.

One tool after another, seed after seed, in one bench run on this machine: the default sweep
(`sweep run sweeps/fashion_mnist.yaml`), KerasTuner's Hyperband and BayesianOptimization
(bench/peer_kerastuner.py) and a plain Optuna script with optuna-integration's callbacks
(bench/peer_optuna.py). Same data (Keras' Fashion-MNIST files), same split (stratified 10 % validation,
the run's seed), same space, same wall-clock budget per run. Each tool's wall time is its whole process,
start-up included. What each tool leaves tracked is read back from what it wrote, not asserted.
Needs the `bench` extra (pip install -e ".[bench]"). Run through bench/run.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

BENCH = Path(__file__).resolve().parent
TOOLS = ("pipeline", "optuna script", "kerastuner hyperband", "kerastuner bayesian")
STUDY = "fashion-mnist-ann"


def row_k(data_dir: str, sweep_file: Path, variant, budget_s: float, seeds: tuple[int, ...], save) -> dict:
    """Every tool once per seed, seed after seed; `save(figures)` after each run, so a long row that is
    cut short keeps what it measured."""
    figures = {"budget_s": budget_s, "seeds": list(seeds), "runs": {tool: [] for tool in TOOLS}, "tracked": {}}
    for seed in seeds:
        for tool in TOOLS:
            with tempfile.TemporaryDirectory() as tmp:
                result, figures["tracked"][tool] = _RUNNERS[tool](Path(tmp), data_dir, sweep_file, variant,
                                                                  budget_s, seed)
            figures["runs"][tool].append({"seed": seed, **result})
            save(figures)
            print(f"  {tool} seed {seed}: {json.dumps(result)[:300]}", flush=True)
    return figures


LEVERS = ("lr_schedule", "label_smoothing", "shift_pixels")  # in the default sweep since row l, not in the peers'


def row_same_space(data_dir: str, sweep_file: Path, variant, budget_s: float, seeds: tuple[int, ...]) -> dict:
    """The pipeline on exactly the peers' space: the default sweep without the training levers row l added."""
    runs, tracked = [], {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            result, tracked = _pipeline(Path(tmp), data_dir, sweep_file, variant, budget_s, seed, without=LEVERS)
        runs.append({"seed": seed, **result})
        print(f"  pipeline, the peers' space, seed {seed}: {json.dumps(result)[:300]}", flush=True)
    return {"budget_s": budget_s, "seeds": list(seeds), "runs": runs, "tracked": tracked}


def _pipeline(store: Path, data_dir: str, sweep_file: Path, variant, budget_s: float, seed: int,
              without: tuple[str, ...] = ()):
    path = variant(store, sweep_file.name, seed=seed, timeout=budget_s)
    if without:
        raw = yaml.safe_load(path.read_text())
        raw["search_space"] = {k: v for k, v in raw["search_space"].items() if k not in without}
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    uri = f"sqlite:///{store}/mlflow.db"
    start = time.time()
    _run([sys.executable, "-m", "pipeline.cli", "run", str(path), "--no-progress", "--data-dir", data_dir,
          "--storage", f"sqlite:///{store}/optuna.db", "--tracking-uri", uri])
    wall = time.time() - start
    import optuna

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{store}/optuna.db")
    states = [t.state.name for t in study.trials]
    best = study.best_trial
    client = _client(uri)
    trial_runs = [r for r in _all_runs(client) if r.data.tags.get("sweep.role") == "trial"]
    result = {"wall_s": wall, "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
              "epochs": int(sum(r.data.metrics.get("epochs_run", 0) for r in trial_runs)),
              "val_accuracy": best.value, "test_accuracy": client.get_run(best.user_attrs["mlflow_run_id"])
              .data.metrics["test_accuracy"], "params": best.params}
    pruned = [r for r in trial_runs if r.data.tags.get("sweep.trial_state") == "PRUNED"]
    return result, {**_mlflow_tracking(client, trial_runs, pruned), "servable": _serves_raw_images(
        uri, best.user_attrs["mlflow_run_id"], data_dir, result["test_accuracy"])}


def _optuna_script(store: Path, data_dir: str, sweep_file: Path, variant, budget_s: float, seed: int):
    uri = f"sqlite:///{store}/mlflow.db"
    result = _peer(store, data_dir, ["peer_optuna.py", "--seed", str(seed), "--timeout", str(budget_s),
                                     "--tracking-uri", uri])
    client = _client(uri)
    runs = _all_runs(client)
    pruned = [r for r in runs if r.data.tags.get("state") == "PRUNED"]
    return result, {**_mlflow_tracking(client, runs, pruned), "servable": "no model logged"}


def _kerastuner(kind: str):
    def run(store: Path, data_dir: str, sweep_file: Path, variant, budget_s: float, seed: int):
        folder = store / "kt"
        result = _peer(store, data_dir, ["peer_kerastuner.py", kind, "--seed", str(seed), "--timeout",
                                         str(budget_s), "--directory", str(folder)])
        trials = [json.loads(p.read_text()) for p in folder.glob(f"{kind}/trial_*/trial.json")]
        steps = max((len(m["observations"]) for t in trials for m in t["metrics"]["metrics"].values()), default=0)
        checkpoints = len(list(folder.glob(f"{kind}/trial_*/*.weights.h5")))
        return result, {
            "nested": f"no: {len(trials)} trial folders of JSON, no MLflow",
            "curves": "yes" if steps > 1 else "no: each trial keeps its best epoch's metrics only",
            "pruned_metrics": ("n/a: no pruning; Hyperband's brackets stop trials, whose best-epoch scores are kept"
                               if kind == "hyperband" else "n/a: no pruning"),
            "model": f"weights only: {checkpoints} best-epoch checkpoints, rebuilt by the HyperModel code",
            "servable": "no: weights need the script's HyperModel to rebuild"}
    return run


def _peer(store: Path, data_dir: str, args: list[str]) -> dict:
    """Run a peer script as a user would, with Keras' loader reading the same files from its cache."""
    cache = store / "keras" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for file in Path(data_dir).glob("*.gz"):
        shutil.copy(file, cache)
    out = store / "result.json"
    start = time.time()
    _run([sys.executable, *args, "--out", str(out)], cwd=BENCH, KERAS_HOME=str(store / "keras"))
    return {**json.loads(out.read_text()), "wall_s": time.time() - start}


def _run(command: list[str], cwd: Path | None = None, **env) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri)


def _all_runs(client) -> list:
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, max_results=5000)


def _mlflow_tracking(client, trial_runs: list, pruned: list) -> dict:
    finished = [r for r in trial_runs if r.info.status == "FINISHED"]
    history = max((len(client.get_metric_history(r.info.run_id, "val_accuracy")) for r in finished[:5]), default=0)
    nested = sum("mlflow.parentRunId" in r.data.tags for r in trial_runs)
    with_metrics = sum(bool(r.data.metrics) for r in pruned)
    models = sum(bool(r.outputs and r.outputs.model_outputs) for r in trial_runs)
    return {"nested": f"yes: {nested} trial runs under a parent run" if nested else "no: one flat run per trial",
            "curves": f"yes: {history} epochs per run" if history > 1 else "no: the final value only",
            "pruned_metrics": f"{with_metrics} of {len(pruned)} pruned trials' runs have metrics",
            "model": f"{models} of {len(trial_runs)} trial runs logged a model"}


def _serves_raw_images(uri: str, run_id: str, data_dir: str, logged: float) -> str:
    """Load the best trial's MLflow model as pyfunc and score the raw uint8 test images with it."""
    code = f"""
import mlflow, numpy as np
from pathlib import Path
from pipeline.data.idx import read_idx
mlflow.set_tracking_uri({uri!r})
model = mlflow.pyfunc.load_model("runs:/{run_id}/model")
x = read_idx(Path({str(Path(data_dir) / "t10k-images-idx3-ubyte.gz")!r}))
y = read_idx(Path({str(Path(data_dir) / "t10k-labels-idx1-ubyte.gz")!r}))
print(float(np.mean(np.asarray(model.predict(x)).argmax(axis=1) == y)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        return f"no: {done.stderr.strip().splitlines()[-1][:200]}"
    served = float(done.stdout.strip().splitlines()[-1])
    same = "the logged test accuracy" if np.isclose(served, logged, atol=1e-4) else f"not {logged:.4f}"
    return f"yes: pyfunc on raw uint8 test images scores {served:.4f}, {same}"


_RUNNERS = {"pipeline": _pipeline, "optuna script": _optuna_script,
            "kerastuner hyperband": _kerastuner("hyperband"), "kerastuner bayesian": _kerastuner("bayesian")}


def render_k(r: dict) -> list[str]:
    minutes = r["budget_s"] / 60
    lines = ["## k. Against the peers, on one budget", "",
             f"`python bench/run.py --rows k --budget-k {r['budget_s']:.0f} --seeds-k {_seeds(r)}`: each tool "
             f"searches on the same split for {minutes:g} minutes of wall time (its whole process), with "
             f"{_seed_words(r)}, one run after another on this machine with nothing else running. "
             "Validation chooses the model; its test accuracy is reported. The pipeline runs its default sweep, "
             "which since row l trains with a cosine schedule and searches label smoothing and 1-pixel shifts; "
             "the peers search the space the default sweep had before (the same nine hyperparameters, ranges and "
             "choices). \"pipeline, the peers' space\" (`--rows k_same_space`) is the pipeline on exactly the "
             "peers' space.", "", *_table_head(r)]
    lines += [_table_row(tool, runs) for tool, runs in r["runs"].items() if runs]
    lines += ["", "What each tool leaves behind (read back from its stores after the last run):", "",
              "| tool | nested runs | per-epoch curves | pruned trials' metrics | the model | servable with its "
              "preprocessing |", "|---|---|---|---|---|---|"]
    lines += [f"| {tool} | {t['nested']} | {t['curves']} | {t['pruned_metrics']} | {t['model']} | {t['servable']} |"
              for tool, t in r["tracked"].items()]
    return lines + [""]


def render_other_budgets(results: dict) -> list[str]:
    """Row k's runs on other budgets (bench/results/k_<seconds>s.json, kept when the row is rerun), each
    followed by the pipeline on the peers' space (k_same_space.json) when that ran on the same budget."""
    same = results.get("k_same_space")
    lines = render_same_space(same) if same and same["budget_s"] == results.get("k", {}).get("budget_s") else []
    for name in sorted((k for k in results if re.fullmatch(r"k_\d+s", k)), key=lambda k: results[k]["budget_s"]):
        r = results[name]
        lines += [f"### The same row on {r['budget_s'] / 60:g} minutes per run, {_seed_words(r)}", "",
                  f"`python bench/run.py --rows k --budget-k {r['budget_s']:.0f} --seeds-k {_seeds(r)}` "
                  f"(measured {r['measured']['date']}, {r['measured']['seconds'] / 60:.0f} min), same protocol:", "",
                  *_table_head(r), *[_table_row(tool, runs) for tool, runs in r["runs"].items() if runs], ""]
        if same and same["budget_s"] == r["budget_s"]:
            lines += render_same_space(same)
    return lines


def render_same_space(r: dict) -> list[str]:
    return [f"The pipeline on exactly the peers' space (the default sweep without `lr_schedule`, "
            f"`label_smoothing` and `shift_pixels`), same budget ({r['budget_s'] / 60:g} minutes), "
            f"{_seed_words(r)}:", "", *_table_head(r),
            _table_row("pipeline, the peers' space", r["runs"]), "",
            "What it leaves behind (its last run's stores): " + "; ".join(
                f"{what.replace('_', ' ')}: {r['tracked'][what]}" for what in
                ("nested", "curves", "pruned_metrics", "model", "servable")) + ".", ""]


def _seeds(r: dict) -> str:
    return ",".join(map(str, r["seeds"]))


def _seed_words(r: dict) -> str:
    return f"seed {r['seeds'][0]}" if len(r["seeds"]) == 1 else f"seeds {', '.join(map(str, r['seeds']))}"


def _table_head(r: dict) -> list[str]:
    accuracy = "test accuracy" if len(r["seeds"]) == 1 else "test accuracy, mean ± sd (each seed)"
    return [f"| tool | {accuracy} | validation of the chosen | trials complete (pruned) | epochs | epochs/s "
            "| wall s |", "|---|---|---|---|---|---|---|"]


def _table_row(tool: str, runs: list[dict]) -> str:
    tests = [run["test_accuracy"] for run in runs]
    return (f"| {tool} | {_mean_sd(tests)} | "
            f"{statistics.mean(run['val_accuracy'] for run in runs):.4f} | "
            f"{' / '.join(str(run['complete']) for run in runs)} "
            f"({' / '.join(str(run['pruned']) for run in runs)}) | "
            f"{' / '.join(str(run['epochs']) for run in runs)} | "
            f"{statistics.mean(run['epochs'] / run['wall_s'] for run in runs):.2f} | "
            f"{' / '.join(str(round(run['wall_s'])) for run in runs)} |")


def _mean_sd(values: list[float]) -> str:
    """One seed's value alone; several seeds' mean ± sd, then each seed's value."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    each = ", ".join(f"{v:.4f}" for v in values)
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} ({each})"
