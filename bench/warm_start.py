"""Bench row w: warm starts. A sweep on MNIST warm-started from a Fashion-MNIST study, against a cold one.

The source is a user's study of yesterday: the default sweep on Fashion-MNIST (`source_s` seconds, study seed 42,
its own stores). Each MNIST run is the default sweep file pointed at MNIST (`data.dataset: mnist`, the folder of its
four IDX files) with `study.start_with: []`, so that the warm start is the only difference between the arms: cold
searches from scratch, warm has `study.warm_start: {study, storage, top_k}` naming the source. Both arms run the
same budget for each study seed, whole `sweep run` processes; row q's time-to-accuracy table compares them at
thresholds fit for MNIST. Run through bench/run.py (`--rows w --mnist-dir DIR`).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import yaml

import time_to_accuracy

THRESHOLDS = (0.98, 0.985, 0.99)
ARMS = ("cold", "warm")
SOURCE_STUDY = "fashion-mnist-ann"
STUDY = "mnist-ann"


def row_w(fashion_dir: str, mnist_dir: str, sweep_file: Path, variant, sweep, budget_s: float,
          seeds: tuple[int, ...], source_s: float, top_k: int, save) -> dict:
    """The source study once, then each arm once per seed (`sweep(args, store)` runs a command against the stores
    in `store`: bench/run.py's); `save(figures)` after each run."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp)
        path = variant(source, sweep_file.name, seed=42, timeout=source_s)
        _, source_wall = sweep(["run", str(path), "--data-dir", fashion_dir], source)
        figures = {"budget_s": budget_s, "seeds": list(seeds), "top_k": top_k,
                   "source": {"seconds": source_wall, "budget_s": source_s,
                              "best": _best(source, SOURCE_STUDY, top_k)},
                   "curves": {arm: [] for arm in ARMS}}
        warm_start = {"study": SOURCE_STUDY, "storage": f"sqlite:///{source}/optuna.db", "top_k": top_k}
        for seed in seeds:
            for arm in ARMS:
                with tempfile.TemporaryDirectory() as run_tmp:
                    points = _mnist_run(Path(run_tmp), mnist_dir, sweep_file, variant, sweep, budget_s, seed,
                                        warm_start if arm == "warm" else None)
                figures["curves"][arm].append({"seed": seed, "chosen": time_to_accuracy.chosen_curve(points)})
                save(figures)
                print(f"  {arm} seed {seed}: {figures['curves'][arm][-1]['chosen'][-1:]}", flush=True)
    return figures


def _mnist_run(store: Path, mnist_dir: str, sweep_file: Path, variant, sweep, budget_s: float, seed: int,
               warm_start: dict | None) -> list:
    """The default sweep on MNIST, from scratch or warm-started: its COMPLETE trials' (seconds, val, test)."""
    extra = {"warm_start": warm_start} if warm_start else {}
    path = variant(store, sweep_file.name, seed=seed, timeout=budget_s, start_with=[], name=STUDY, **extra)
    raw = yaml.safe_load(path.read_text())
    raw["data"]["dataset"] = "mnist"
    raw["tracking"]["experiment"] = STUDY
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    started, _ = sweep(["run", str(path), "--data-dir", mnist_dir], store)
    return time_to_accuracy.completed_points(store, STUDY, started)


def _best(store: Path, study_name: str, top_k: int) -> list[dict]:
    """The source study's best trials: what the warm start takes (by validation accuracy)."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{store}/optuna.db")
    done = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: -t.value)
    return [{"trial": t.number, "val_accuracy": t.value, "units": t.params.get("units"),
             "epochs": t.params.get("epochs")} for t in done[:top_k]]


def render_w(r: dict) -> list[str]:
    source = r["source"]
    best = "; ".join(f"trial {b['trial']}: {b['units']} units, {b['epochs']} epochs, val {b['val_accuracy']:.4f}"
                     for b in source["best"])
    return ["## w. Warm starts: MNIST from a Fashion-MNIST study", "",
            f"The source: the default sweep on Fashion-MNIST ({source['seconds'] / 60:.1f} min, seed 42); its "
            f"{r['top_k']} best ({best}) are the warm arm's first trials (`study.warm_start: {{study, storage, "
            f"top_k: {r['top_k']}}}`). Both arms are the default sweep on MNIST without its own first trials "
            f"(`study.start_with: []`), {r['budget_s'] / 60:.0f} minutes per run, study seeds "
            f"{', '.join(map(str, r['seeds']))}: minutes until the validation-chosen trial first reaches each test "
            "accuracy (median, range; '-' when a seed never did). A trial running when the budget ends is "
            f"finished, so a run can end later; {_first_results(r)}.", ""] + time_to_accuracy.table(THRESHOLDS) + [
            time_to_accuracy.table_row(arm, r, arm, THRESHOLDS) for arm in ARMS] + [""]


def _first_results(r: dict) -> str:
    """When each arm had its first COMPLETE trial, minutes (median over the seeds): a warm start's configurations
    are the source's best, often its longest."""
    return ", ".join(f"{arm}'s first trial ended at {statistics.median(run['chosen'][0][0] for run in runs) / 60:.1f} "
                     "min" for arm, runs in r["curves"].items() if runs and all(run["chosen"] for run in runs))
