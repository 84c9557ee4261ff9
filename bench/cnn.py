"""Bench row for the cnn family: its default sweep (sweeps/fashion_mnist_cnn.yaml) for 20 minutes on Fashion-MNIST,
beside the dense family's row h winner. Not a test; prints a markdown table and saves the figures as JSON.

    python bench/run.py --data-dir ../shared/data/fashion-mnist --rows n    # the row: 20 minutes of search
    python bench/cnn.py --data-dir ../shared/data/fashion-mnist --minutes 2  # a dry run, printed, not saved

The sweep is the real `sweep run` in a subprocess, on fresh stores in a temporary folder; the winner is the
trial with the best validation accuracy, and its test accuracy is the one its run logged (checked again here
on the raw test images with the logged model). The dense side is row h's raw winner (bench/results/h.json):
its test accuracy as row h measured it, and its latency and size measured here on the same configuration
built afresh with its optimizer's state (neither depends on the weights' values), so both models are timed in
one process, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "sweeps" / "fashion_mnist_cnn.yaml"
ROW_H = ROOT / "bench" / "results" / "h.json"
GOAL = 0.93  # issue 22: the cnn family's default sweep on Fashion-MNIST, 20 minutes on 2 cores
COSTS = ("params_count", "model_mb", "latency_ms_batch1", "latency_ms_batch256")


def run_sweep(data_dir: str, minutes: float, store: Path) -> float:
    """`sweep run` of the cnn sweep with a study timeout of `minutes`; the wall seconds it took (the trial
    running at the timeout finishes, as in every row)."""
    command = [sys.executable, "-m", "pipeline.cli", "run", str(SWEEP), "--data-dir", data_dir, "--no-progress",
               "--timeout", str(minutes * 60), "--storage", f"sqlite:///{store}/optuna.db",
               "--tracking-uri", f"sqlite:///{store}/mlflow.db"]
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.time() - start


def winner(store: Path) -> dict:
    """The trial with the best validation accuracy, with what its run logged, and the study's trial counts."""
    import mlflow
    import optuna

    from pipeline.config import load_sweep

    study = optuna.load_study(study_name=load_sweep(SWEEP).study.name, storage=f"sqlite:///{store}/optuna.db")
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = max(finished, key=lambda t: t.value)
    run = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db").get_run(best.user_attrs["mlflow_run_id"])
    states = [t.state.name for t in study.trials]
    return {"trial": best.number, "val_accuracy": best.value, "test_accuracy": run.data.metrics["test_accuracy"],
            "run_id": run.info.run_id, "params": best.user_attrs["hyperparameters"],
            "trials": {state.lower(): states.count(state) for state in ("COMPLETE", "PRUNED", "FAIL")}}


def measure_both(data_dir: str, store: Path, cnn: dict, dense_params: dict) -> tuple[dict, dict, float]:
    """Latency and size of the cnn winner's logged model and of row h's configuration, measured the same way
    in this process; and the logged cnn model's accuracy on the raw test images."""
    from pipeline.tensorflow_setup import load_tensorflow

    load_tensorflow()
    import numpy as np

    from pipeline.config import load_sweep, with_overrides
    from pipeline.data import load_splits
    from pipeline.hyperparameters import Hyperparameters
    from pipeline.measure import measure
    from pipeline.model import Design, build_model
    from pipeline.preprocessing import fit_stats
    from pipeline.tracking import models

    config = with_overrides(load_sweep(SWEEP), data_dir=data_dir)
    data = load_splits(config.data, config.study.seed)  # the sweep's own split
    model = models.load_model(models.trial_model_uri(cnn["run_id"]), f"sqlite:///{store}/mlflow.db")
    served = float(np.mean(model.predict(data.x_test, batch_size=1024, verbose=0).argmax(axis=1) == data.y_test))
    dense = build_model(Hyperparameters.from_dict(dense_params), data.inputs, len(data.class_names),
                        fit_stats(data.x_train), Design("dense"))
    dense.optimizer.build(dense.trainable_variables)  # its state, as a trained model's file holds it
    examples = data.x_test[:256]
    return measure(model, examples), measure(dense, examples), served


def row_n(data_dir: str, minutes: float = 20.0) -> dict:
    """The row's figures: the cnn sweep's winner and row h's dense winner, each with its costs."""
    data_dir = str(Path(data_dir).resolve())
    row_h = json.loads(ROW_H.read_text())["raw"]
    with tempfile.TemporaryDirectory(prefix="bench-cnn-") as folder:
        store = Path(folder)
        search_s = run_sweep(data_dir, minutes, store)
        cnn = winner(store)
        cnn_costs, dense_costs, served = measure_both(data_dir, store, cnn, row_h["params"])
    cnn.update(costs={key: cnn_costs[key] for key in COSTS}, served_test_accuracy=served)
    dense = {**row_h, "costs": {key: dense_costs[key] for key in COSTS}}
    return {"minutes": minutes, "search_s": search_s, "goal": GOAL, "cnn": cnn, "dense_row_h": dense,
            "cpus": os.cpu_count()}


def render_n(r: dict) -> list[str]:
    cnn, dense = r["cnn"], r["dense_row_h"]
    search = f"{r['search_s'] / 60:.1f} min ({r['minutes']:g} min budget)"
    rows = [("cnn: `sweeps/fashion_mnist_cnn.yaml`", cnn, search),
            ("dense: row h's winner", dense, "row h (`sweeps/fashion_mnist.yaml`, 20 min budget)")]
    lines = ["| family | trial | test accuracy | val accuracy | params | size (MB) | latency b1 (ms/image) | "
             "latency b256 (ms/image) | search |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, figures, how in rows:
        c = figures["costs"]
        lines.append(f"| {name} | #{figures['trial']} | {figures['test_accuracy']:.4f} | "
                     f"{figures['val_accuracy']:.4f} | {c['params_count']:,} | {c['model_mb']:.2f} | "
                     f"{c['latency_ms_batch1']:.3f} | {c['latency_ms_batch256']:.4f} | {how} |")
    verdict = "reaches" if cnn["test_accuracy"] >= r["goal"] else "misses"
    trials = ", ".join(f"{count} {state}" for state, count in cnn["trials"].items())
    return ["## n. Convolutional networks: the cnn family's default sweep", "",
            f"`sweep run sweeps/fashion_mnist_cnn.yaml` with a {r['minutes']:g}-minute budget on {r['cpus']} cores, "
            "beside the dense family's row h winner (its test accuracy as row h measured it; both models' latency "
            "and size measured here, one after the other in one process).", "", *lines, "",
            f"The cnn winner (validation-chosen) {verdict} issue 22's goal of {r['goal']} test accuracy; trials: "
            f"{trials}; its logged model scores {cnn['served_test_accuracy']:.4f} on the raw test images. Its "
            f"hyperparameters: `{json.dumps(cnn['params'])}`.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    parser.add_argument("--minutes", type=float, default=2.0, help="the sweep's study timeout (the row: 20)")
    args = parser.parse_args()
    print("\n".join(render_n(row_n(args.data_dir, args.minutes))))


if __name__ == "__main__":
    main()
