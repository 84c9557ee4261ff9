"""Bench row: regression (`task: regression`) on scikit-learn's diabetes table against scikit-learn's own models.

    python bench/regression.py                      # 5 seeds, 10 trials or 90 s per seed: about 10 minutes
    python bench/regression.py --seeds 0 1 --trials 6 --timeout 60

Per seed, the table (sweeps/data/diabetes.csv, 442 rows) is shuffled with the seed and split 80/20; the 20 %
are the test rows for every model. The pipeline runs the real `sweep run sweeps/regression.yaml` in a
subprocess on the 80 % (data.test_file: the 20 %; the sweep carves its validation rows out of the 80 % with the
same seed), and its winner by val_rmse is scored by the test metrics its run logged. scikit-learn's Ridge
(features standardized, alpha by leave-one-out CV over a grid) and HistGradientBoostingRegressor (defaults)
are fit on the whole 80 %. Prints a markdown table: test RMSE and R², mean ± sd over the seeds, and each seed's.
Not a test; results/regression.json keeps the figures.
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
RESULTS = ROOT / "bench" / "results" / "regression.json"
MODELS = ("pipeline", "Ridge", "HistGradientBoosting")


def split(seed: int, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The seed's 80/20 shuffle of the table, written as train.csv and test.csv in `folder`."""
    table = pd.read_csv(TABLE).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cut = int(round(0.8 * len(table)))
    train, test = table.iloc[:cut], table.iloc[cut:]
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return train, test


def run_pipeline(seed: int, folder: Path, trials: int, timeout: int) -> dict:
    """`sweep run` on the seed's rows; the winner's (best val_rmse) logged test metrics."""
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
    subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(path), "--no-progress", "--storage", storage,
                    "--tracking-uri", tracking_uri], check=True, capture_output=True, text=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.time() - start
    study = optuna.load_study(study_name=raw["study"]["name"], storage=optuna_storage(storage))
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = min(done, key=lambda t: t.value)
    metrics = mlflow.MlflowClient(tracking_uri).get_run(best.user_attrs[keys.RUN_ID]).data.metrics
    return {"rmse": metrics[keys.TEST_RMSE], "r2": metrics[keys.TEST_R2], "val_rmse": best.value,
            "trials": len(done), "wall_s": wall, "params": best.user_attrs[keys.PARAMS]}


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


def table(runs: dict[str, list[dict]], trials: int, timeout: int) -> str:
    def spread(values: list[float], digits: int) -> str:
        return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"

    lines = [f"Diabetes table (442 rows, 10 features), {len(runs['Ridge'])} seeded 80/20 splits; the "
             f"pipeline's `sweep run sweeps/regression.yaml` with up to {trials} trials or {timeout} s per seed.",
             "", "| model | test RMSE | test R² | RMSE per seed |", "| --- | --- | --- | --- |"]
    for name in MODELS:
        rmse, r2 = [r["rmse"] for r in runs[name]], [r["r2"] for r in runs[name]]
        lines.append(f"| {name} | {spread(rmse, 2)} | {spread(r2, 3)} | {', '.join(f'{v:.1f}' for v in rmse)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--timeout", type=int, default=90)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {name: [] for name in MODELS}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="bench-regression-") as tmp:
            train, test = split(seed, Path(tmp))
            runs["pipeline"].append({"seed": seed, **run_pipeline(seed, Path(tmp), args.trials, args.timeout)})
        for name, result in run_sklearn(seed, train, test).items():
            runs[name].append({"seed": seed, **result})
        print(f"seed {seed}: " + ", ".join(f"{n} {runs[n][-1]['rmse']:.2f}" for n in MODELS), file=sys.stderr,
              flush=True)
    RESULTS.write_text(json.dumps({"trials": args.trials, "timeout_s": args.timeout, "runs": runs}, indent=1))
    print(table(runs, args.trials, args.timeout))


if __name__ == "__main__":
    main()
