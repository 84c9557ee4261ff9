"""Bench row o: regression (`task: regression`) on scikit-learn's diabetes table against scikit-learn's models.

    python bench/run.py --rows o                    # the row: 5 seeds, 10 trials or 90 s per seed, ~10 minutes
    python bench/regression.py --seeds 0 1 --trials 6 --timeout 60   # a dry run, printed, not saved

Per seed, the table (sweeps/data/diabetes.csv, 442 rows) is shuffled with the seed and split 80/20; the 20 %
are the test rows for every model. The pipeline runs the real `sweep run sweeps/regression.yaml` in a
subprocess on the 80 % (data.test_file: the 20 %; the sweep carves its validation rows out of the 80 % with the
same seed), and its winner by val_rmse is scored by the test metrics its run logged; then `sweep export --refit`
retrains that configuration on the whole 80 % (train and validation rows, as Ridge and the boosted trees are
fit) and is scored on the same test rows, as its metadata.json reports. scikit-learn's Ridge (features
standardized, alpha by leave-one-out CV over a grid) and HistGradientBoostingRegressor (defaults) are fit on the
whole 80 %. Renders a markdown table: test RMSE and R², mean ± sd over the seeds, and each seed's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "sweeps" / "regression.yaml"
TABLE = ROOT / "sweeps" / "data" / "diabetes.csv"
LABEL = "progression"
MODELS = ("pipeline", "pipeline, refit", "Ridge", "HistGradientBoosting")
GOAL = "Ridge"  # issue 22: the pipeline's test RMSE at or below Ridge's


def split(seed: int, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The seed's 80/20 shuffle of the table, written as train.csv and test.csv in `folder`."""
    table = pd.read_csv(TABLE).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cut = int(round(0.8 * len(table)))
    train, test = table.iloc[:cut], table.iloc[cut:]
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return train, test


def run_pipeline(seed: int, folder: Path, trials: int, timeout: int) -> dict[str, dict]:
    """`sweep run` on the seed's rows: the winner's (best val_rmse) logged test metrics; then its refit export's."""
    import mlflow
    import optuna

    from pipeline import keys
    from pipeline.study import optuna_storage

    raw = yaml.safe_load(SWEEP.read_text())
    raw["study"].update(seed=seed, n_trials=trials, timeout=timeout)
    raw["data"].update(data_dir=str(folder / "train.csv"), test_file="test.csv")
    path = folder / "regression.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    storage, tracking_uri = f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db"
    start = time.time()
    stores = ["--storage", storage, "--tracking-uri", tracking_uri]
    _sweep(["run", str(path), "--no-progress", *stores])
    wall = time.time() - start
    _sweep(["export", str(path), "--refit", "--out", str(folder / "export"), *stores])
    refit = json.loads((folder / "export" / "metadata.json").read_text())
    study = optuna.load_study(study_name=raw["study"]["name"], storage=optuna_storage(storage))
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = min(done, key=lambda t: t.value)
    metrics = mlflow.MlflowClient(tracking_uri).get_run(best.user_attrs[keys.RUN_ID]).data.metrics
    return {"pipeline": {"rmse": metrics[keys.TEST_RMSE], "r2": metrics[keys.TEST_R2], "val_rmse": best.value,
                         "trials": len(done), "wall_s": wall, "params": best.user_attrs[keys.PARAMS]},
            "pipeline, refit": {"rmse": refit[keys.TEST_RMSE], "r2": refit[keys.TEST_R2]}}


def _sweep(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=True, capture_output=True, text=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def run_sklearn(seed: int, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, dict]:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = train.drop(columns=LABEL).to_numpy(), train[LABEL].to_numpy()
    x_test, y_test = test.drop(columns=LABEL).to_numpy(), test[LABEL].to_numpy()
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 25))).fit(x, y)
    boosted = HistGradientBoostingRegressor(random_state=seed).fit(x, y)
    return {name: scores(model.predict(x_test), y_test) for name, model in (("Ridge", ridge),
                                                                             ("HistGradientBoosting", boosted))}


def scores(predicted: np.ndarray, actual: np.ndarray) -> dict:
    errors = predicted - actual
    return {"rmse": float(np.sqrt(np.mean(errors ** 2))),
            "r2": float(1 - np.sum(errors ** 2) / np.sum((actual - actual.mean()) ** 2))}


def row_o(data_dir: str | None = None, seeds: tuple[int, ...] = (0, 1, 2, 3, 4), trials: int = 10,
          timeout: int = 90) -> dict:
    """The row's figures, per model and seed (the row needs no Fashion-MNIST: `data_dir` is bench/run.py's)."""
    runs: dict[str, list[dict]] = {name: [] for name in MODELS}
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="bench-regression-") as tmp:
            train, test = split(seed, Path(tmp))
            results = {**run_pipeline(seed, Path(tmp), trials, timeout), **run_sklearn(seed, train, test)}
        for name in MODELS:
            runs[name].append({"seed": seed, **results[name]})
        print(f"seed {seed}: " + ", ".join(f"{n} {runs[n][-1]['rmse']:.2f}" for n in MODELS), file=sys.stderr,
              flush=True)
    return {"trials": trials, "timeout_s": timeout, "runs": runs}


def render_o(r: dict) -> list[str]:
    runs = r["runs"]

    def spread(values: list[float], digits: int) -> str:
        return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"

    lines = []
    for name in MODELS:
        rmse, r2 = [x["rmse"] for x in runs[name]], [x["r2"] for x in runs[name]]
        lines.append(f"| {name} | {spread(rmse, 2)} | {spread(r2, 3)} | {', '.join(f'{v:.1f}' for v in rmse)} |")
    mean = {name: statistics.mean(x["rmse"] for x in runs[name]) for name in MODELS}
    verdict = {name: "at or below" if mean[name] <= mean[GOAL] else "above" for name in ("pipeline", "pipeline, refit")}
    return ["## o. Regression: the diabetes table against scikit-learn", "",
            f"scikit-learn's diabetes table (442 rows, 10 features), {len(runs['Ridge'])} seeded 80/20 splits; per "
            f"seed the pipeline's `sweep run sweeps/regression.yaml` (up to {r['trials']} trials or {r['timeout_s']} "
            "s) chooses by val_rmse on a fifth of the 80 %; \"pipeline\" is that trial's model, \"pipeline, refit\" "
            "the same configuration retrained by `sweep export --refit` on the whole 80 %, as Ridge (alpha by "
            "leave-one-out CV) and HistGradientBoostingRegressor (defaults) are fit.", "",
            "| model | test RMSE | test R² | RMSE per seed |", "| --- | --- | --- | --- |", *lines, "",
            f"Issue 22's goal, the pipeline's mean test RMSE at or below Ridge's ({mean[GOAL]:.2f}): the trial's model "
            f"is {verdict['pipeline']} it ({mean['pipeline']:.2f}), the refit export {verdict['pipeline, refit']} it "
            f"({mean['pipeline, refit']:.2f}).", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--timeout", type=int, default=90)
    args = parser.parse_args()
    print("\n".join(render_o(row_o(seeds=tuple(args.seeds), trials=args.trials, timeout=args.timeout))))


if __name__ == "__main__":
    main()
