"""The text of the sweep file `sweep init` writes: a header of what was found, then every key with a short
comment lined up beside it, so that a user sees what each setting does and what else it could be before
editing it. Written line by line rather than dumped, as PyYAML writes no comments.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.config import DataConfig
from pipeline.scaffold.budget import TRIALS, Budget
from pipeline.scaffold.inspection import SEED, Found

UNTIMED_TIMEOUT_S = 1200
COMMENT_COLUMN = 33


def render(found: Found, family: str, why: str, space: dict, budget: Budget | None) -> str:
    """The sweep file: a header of what was found, then every key with a short comment."""
    data, regression = found.data, found.data.task == "regression"
    lines = [f"# Written by `sweep init` from {data.data_dir or data.dataset}. What it found:"]
    lines += [f"#   {note}" for note in found.notes]
    lines += ["# n_trials and timeout are totals for the study: rerunning this file resumes it.", ""]
    if regression:
        lines += [_entry("task", "regression", "the label is a number to predict, not a class", indent=""), ""]
    lines += ["study:", *_study_lines(found.name, space, budget, regression), ""]
    lines += ["data:", *_data_lines(data), ""]
    lines += ["model:", _entry("family", family, why)]
    if family == "dense" and found.splits.inputs.image_shape is not None:
        lines.append("  # a convolutional network instead: family: cnn, with the space of "
                     "sweeps/fashion_mnist_cnn.yaml")
    lines += ["", "search_space:"]
    lines += [_entry(name, spec, comment) for name, (spec, comment) in space.items()]
    return "\n".join(lines) + "\n"


def _study_lines(name: str, space: dict, budget: Budget | None, regression: bool) -> list[str]:
    """The budget (timed, or a plain default), the task's metric, and pruning after a quarter of the fewest
    epochs a trial trains."""
    trials, timeout = (budget.n_trials, budget.timeout) if budget else (TRIALS, UNTIMED_TIMEOUT_S)
    warmup = max(2, space["epochs"][0]["low"] // 4)
    return [_entry("name", name, "the study's name; also its MLflow experiment and model"),
            f"  # Budget: {budget.comment}." if budget else
            "  # Budget: not timed (sweep init --no-timing); a plain default, adjust it to your machine.",
            _entry("n_trials", trials, "trials in total"),
            _entry("timeout", timeout, "seconds in total" + ("; a quarter over the estimate" if budget else "")),
            _entry("seed", SEED, None),
            _entry("metric", "val_rmse" if regression else "val_accuracy",
                   "or val_mae, val_r2, val_loss" if regression else "or val_loss"),
            _entry("pruner", {"type": "median", "startup_trials": 5, "warmup_epochs": warmup},
                   "stops trials below the median so far")]


def _data_lines(data: DataConfig) -> list[str]:
    where = "relative to the folder `sweep run` is run from" if data.data_dir and not Path(
        data.data_dir).is_absolute() else "absolute, so it works from any folder"
    lines = [_entry("dataset", data.dataset, "idx | images | npz | table, or a Keras dataset's name")]
    if data.data_dir is not None:
        lines.append(_entry("data_dir", data.data_dir, where))
    if data.dataset == "table":
        lines += [_entry("label", data.label, "the column holding the number" if data.task == "regression"
                         else "the column holding the class"),
                  _entry("categorical", list(data.categorical), "text columns, one-hot encoded inside the model"),
                  _entry("missing", data.missing, "refuse | drop (those rows) | impute (fitted on train)"),
                  _entry("test_fraction", data.test_fraction, "kept apart as the test set")]
    if data.dataset == "images":
        lines += [_entry("image_size", list(data.image_size) if data.image_size else None,
                         "[height, width] to resize to; null = as the files are"),
                  _entry("test_fraction", data.test_fraction, "without train/ and test/ folders: the test part")]
    if data.dataset == "idx":
        lines.append("  # Fashion-MNIST or MNIST? dataset: fashion_mnist (or mnist), this data_dir: named classes")
    lines.append(_entry("validation_fraction", data.validation_fraction, "of training, for choosing"))
    return lines


def _entry(key: str, value, comment: str | None, indent: str = "  ") -> str:
    """`  key: value  # comment`, the value in YAML's flow style, comments lined up."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000, allow_unicode=True)
    line = f"{indent}{key}: {text.removesuffix(chr(10)).removesuffix('...').strip()}"
    return f"{line.ljust(COMMENT_COLUMN - 1)} # {comment}" if comment else line
