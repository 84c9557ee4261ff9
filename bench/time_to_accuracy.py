"""Bench row q: time to a good model. The test accuracy of the validation-chosen trial against wall time.

What users feel first is how long until the sweep has *something good*. For each study seed, the default sweep
(`sweep run sweeps/fashion_mnist.yaml`, whole process, start-up included) and the plain Optuna script of row k
(bench/peer_optuna.py, the peers' space) run on one budget. After each COMPLETE trial the model a user would
take is the best by validation accuracy so far; its test accuracy, only reported, makes the curve. The table
gives the minutes until that model first reaches each threshold, median and range over the seeds. Run through
bench/run.py (`--rows q`); the peer needs the `bench` extra.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import peers

THRESHOLDS = (0.89, 0.90, 0.91, 0.92)
TOOLS = ("pipeline", "optuna script")


def row_q(data_dir: str, sweep_file: Path, variant, budget_s: float, seeds: tuple[int, ...], save,
          tools: tuple[str, ...] = TOOLS) -> dict:
    """Each tool once per seed; `save(figures)` after each run, so a long row that is cut short keeps what it
    measured. `variant` writes the sweep file each pipeline run uses (row q_before: without its first trials)."""
    figures = {"budget_s": budget_s, "seeds": list(seeds), "curves": {tool: [] for tool in tools}}
    for seed in seeds:
        for tool in tools:
            with tempfile.TemporaryDirectory() as tmp:
                points = _RUNNERS[tool](Path(tmp), data_dir, sweep_file, variant, budget_s, seed)
            figures["curves"][tool].append({"seed": seed, "chosen": chosen_curve(points)})
            save(figures)
            print(f"  {tool} seed {seed}: {figures['curves'][tool][-1]['chosen'][-1:]}", flush=True)
    return figures


def chosen_curve(points: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
    """(seconds, test accuracy) each time the validation-chosen model changes; `points` are the COMPLETE trials'
    (seconds at completion, validation accuracy, test accuracy)."""
    curve, best = [], None
    for seconds, val, test in sorted(points):
        if best is None or val > best:
            best = val
            curve.append((seconds, test))
    return curve


def minutes_to(curve: list[tuple[float, float]], threshold: float) -> float | None:
    """When the chosen model first reached `threshold` test accuracy (None: never within the budget)."""
    return next((seconds / 60 for seconds, test in curve if test >= threshold), None)


def _pipeline(store: Path, data_dir: str, sweep_file: Path, variant, budget_s: float, seed: int) -> list:
    """The default sweep as row k runs it, its trials read back: seconds from the command's start."""
    started = time.time()
    peers._pipeline(store, data_dir, sweep_file, variant, budget_s, seed)
    return completed_points(store, peers.STUDY, started)


def completed_points(store: Path, study_name: str, started: float) -> list[tuple[float, float, float]]:
    """A pipeline study's COMPLETE trials in `store`: (seconds from `started` to completion, validation accuracy,
    test accuracy from the trial's MLflow run)."""
    import mlflow
    import optuna

    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{store}/optuna.db")
    client = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db")
    return [(t.datetime_complete.timestamp() - started, t.value,
             client.get_run(t.user_attrs["mlflow_run_id"]).data.metrics["test_accuracy"])
            for t in study.trials if t.state.name == "COMPLETE"]


def _optuna_script(store: Path, data_dir: str, sweep_file: Path, variant, budget_s: float, seed: int) -> list:
    """Row k's plain Optuna script; it writes when each COMPLETE trial ended, with its results (seconds here from
    the script's launch, imports included, as the pipeline's are from its command's)."""
    launched = time.time()
    result = peers._peer(store, data_dir, ["peer_optuna.py", "--seed", str(seed), "--timeout", str(budget_s),
                                           "--tracking-uri", f"sqlite:///{store}/mlflow.db"])
    return [(ended - launched, val, test) for ended, val, test in result["trials"]]


_RUNNERS = {"pipeline": _pipeline, "optuna script": _optuna_script}


def draw(figures: dict, path: Path, before: dict | None = None) -> None:
    """Row q's curves, and row q_before's (the default sweep without its first trials) dashed when measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for tool, color in zip(TOOLS, ("tab:blue", "tab:orange")):
        _draw_runs(axis, figures, tool, color, "-", tool)
    if before:
        _draw_runs(axis, before, "pipeline", "tab:green", "--", "pipeline without start_with")
    for threshold in THRESHOLDS:
        axis.axhline(threshold, color="grey", linewidth=0.5, linestyle=":")
    axis.set(xlabel="wall time (minutes)", ylabel="test accuracy of the validation-chosen trial",
             ylim=(0.85, 0.93), title="Time to a good model, Fashion-MNIST, 2 cores")
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _draw_runs(axis, figures: dict, tool: str, color: str, style: str, label: str) -> None:
    for run in figures["curves"][tool]:
        curve = run["chosen"]
        if curve:
            minutes = [s / 60 for s, _ in curve]
            minutes.append(max(minutes[-1], figures["budget_s"] / 60))  # held to the budget's end
            tests = [t for _, t in curve] + [curve[-1][1]]
            axis.step(minutes, tests, where="post", color=color, linestyle=style, alpha=0.8,
                      label=f"{label}, seed {run['seed']}")


def render_q(r: dict) -> list[str]:
    lines = ["## q. Time to a good model", "",
             f"The test accuracy of the validation-chosen trial against wall time, {r['budget_s'] / 60:.0f} minutes "
             f"per run, study seeds {', '.join(map(str, r['seeds']))}: minutes until it first reaches each test "
             "accuracy (median, range; '-' when a seed never did).", ""] + table()
    lines += [table_row(_label(tool, r), r, tool) for tool in r["curves"]]
    return lines + ["", "![Time to a good model](time-to-accuracy.png)", ""]


def render_before(r: dict) -> list[str]:
    """Row q_before: the same measurement of the default sweep without `study.start_with`, its first trials."""
    return [f"Before the first trials (row q_before: the default sweep without `study.start_with`, "
            f"{r['budget_s'] / 60:.0f} minutes per run, the same seeds):", ""] + table() + [
            table_row("pipeline without start_with", r, "pipeline"), ""]


def _label(tool: str, r: dict) -> str:
    """The tool, and its seeds where it has fewer runs than the row (a run cut short is not counted)."""
    seeds = [run["seed"] for run in r["curves"][tool]]
    return tool if seeds == r["seeds"] else f"{tool} (seeds {', '.join(map(str, seeds))})"


def table(thresholds: tuple[float, ...] = THRESHOLDS) -> list[str]:
    """The head of a time-to-accuracy table (also row w's, at MNIST's thresholds)."""
    decimals = max(len(repr(t).partition(".")[2]) for t in thresholds)  # 0.90 beside 0.91, 0.980 beside 0.985
    return ["| run | " + " | ".join(f"{t:.{decimals}f}" for t in thresholds) + " | at the end |",
            "| --- | " + " | ".join("---" for _ in thresholds) + " | --- |"]


def table_row(label: str, r: dict, tool: str, thresholds: tuple[float, ...] = THRESHOLDS) -> str:
    """One tool's runs: the minutes to each threshold (median, range) and the accuracy at the budget's end."""
    runs = r["curves"][tool]
    cells = [_minutes_cell([minutes_to(run["chosen"], t) for run in runs]) for t in thresholds]
    ends = [run["chosen"][-1][1] for run in runs if run["chosen"]]
    return f"| {label} | " + " | ".join(cells) + f" | {_spread(ends)} |"


def _minutes_cell(values: list[float | None]) -> str:
    reached = [v for v in values if v is not None]
    if not reached:
        return "-"
    note = "" if len(reached) == len(values) else f" ({len(reached)} of {len(values)})"
    return f"{statistics.median(reached):.1f} ({min(reached):.1f}-{max(reached):.1f}){note}"


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.4f} ({min(values):.4f}-{max(values):.4f})"
