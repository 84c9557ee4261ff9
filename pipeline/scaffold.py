"""`sweep init DATA`: inspect a dataset through the loaders `sweep run` uses, and write a commented sweep file
sized to it, which `sweep run` takes unchanged.

What it infers (the source, the inputs, the classes or the numbers, the task, a table's label) is said in the
file's header and in the summary it prints. The data is loaded and split as `sweep run` does, so data that
`sweep run` would refuse is refused here, with the same error. The budget comes from a timed epoch of the
file's middle model on this machine.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pipeline.config import DataConfig, SweepConfig, parse_sweep_text
from pipeline.data import KERAS_DATASETS, Splits, load_splits
from pipeline.data.idx import holds_idx
from pipeline.data.images import has_split_folders, list_classes
from pipeline.data.npz import array_names, read_arrays
from pipeline.data.records import continuous_hint
from pipeline.data.tables import READERS, read_table
from pipeline.errors import BadInputError, DataError
from pipeline.hyperparameters import CategoricalParam, FixedParam, FloatParam, Hyperparameters, IntParam, base_values

SEED = 42
LABEL_NAMES = ("label", "labels", "target", "class", "y", "category", "outcome")  # a table's label, by name
SMALL_TABLE = 2000  # rows: below this a table gets small networks and small batches
MANY_CATEGORIES = 50  # a text column with more values is warned about: an identifier or free text, likely
IMBALANCE = 10  # the largest class over the smallest above this is warned about
MAX_SIDE = 64  # pictures larger than this on a side are resized to it: a search needs many fast trials
BATCHES = (2, 4, 8, 16, 32, 64, 128, 256, 512)
TIMED_ROWS = 2000  # the timed epoch trains on at most this many rows, scaled to the whole training split
TRIAL_OVERHEAD_S = 5  # a trial's cost besides its epochs: a fresh session, its model and plots logged
MAX_BUDGET_S = 4 * 3600  # a longer estimate gets fewer trials rather than a longer timeout
TRIALS = 20
UNTIMED_TIMEOUT_S = 1200
COMMENT_COLUMN = 33


@dataclass(frozen=True)
class Scaffold:
    """The sweep file written: where, its text, and what was inferred (warnings start with "warning:")."""

    path: Path
    text: str
    notes: tuple[str, ...]

    def __str__(self) -> str:
        return "\n".join([*self.notes, f"Wrote {self.path}", f"Run it: sweep run {self.path}"])


@dataclass(frozen=True)
class Found:
    """What inspecting the data found: the data settings as the file writes them, the split `sweep run` will
    make, and what to tell the user."""

    name: str
    data: DataConfig
    splits: Splits
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Budget:
    """study.n_trials and study.timeout, and how they were sized."""

    n_trials: int
    timeout: int
    comment: str


def init_sweep(data: Path, out: Path | None, label: str | None, force: bool, timing: bool) -> Scaffold:
    """Inspect `data`, size a search to it, and write the sweep file (default sweeps/NAME.yaml)."""
    if label is not None and data.suffix.lower() not in READERS:
        raise BadInputError(f"--label {label}: names a table's column; {data} is not a table "
                            f"({', '.join(READERS)})")
    name = study_name(data)
    path = checked_out(out or Path("sweeps") / f"{name}.yaml", force)
    found = inspect(data, label, name)
    family, why = family_for(found.splits)
    chosen = search_space(found.splits, family)
    text = render(found, family, why, chosen, None)
    budget = timed_budget(parse_sweep_text(text, path), found.splits) if timing else None
    text = render(found, family, why, chosen, budget)
    parse_sweep_text(text, path)  # what `sweep run` will read, checked before it is written
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    notes = [*found.notes, f"Model: {family} ({why})"]
    notes += [f"Budget: {budget.comment}" if budget else "Budget: not timed (--no-timing); a plain default written"]
    return Scaffold(path, text, tuple(notes))


def study_name(data: Path) -> str:
    """The data's name as a study name: lower case, runs of other characters as one '-'."""
    stem = data.resolve().name if data.is_dir() else data.name if str(data) in KERAS_DATASETS else data.stem
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "sweep"


def checked_out(out: Path, force: bool) -> Path:
    """A .yaml path to write; an existing file is replaced only with --force, and never one that is not YAML."""
    if out.is_dir():
        raise BadInputError(f"--out {out}: is a folder; name the sweep file to write, e.g. {out / 'sweep.yaml'}")
    if out.suffix.lower() not in (".yaml", ".yml"):
        kept = "; an existing file that is not one is never replaced" if out.exists() else ""
        raise BadInputError(f"--out {out}: a sweep file is named NAME.yaml (or .yml){kept}")
    if out.exists() and not force:
        raise BadInputError(f"{out}: exists; pass --force to replace it, or --out another file")
    return out


def inspect(data: Path, label: str | None, name: str) -> Found:
    """The data as `sweep run` loads and splits it, with what was inferred on the way."""
    settings, notes = source_settings(data, label)
    if settings.dataset in KERAS_DATASETS:  # Keras' loaders load TensorFlow: quietly, as a worker does
        from pipeline.tensorflow_setup import load_tensorflow

        load_tensorflow()
    # Loaded, checked against memory and split as a worker does, from data_dir as written: the same errors.
    splits = load_splits(settings, SEED)
    notes += describe_inputs(splits)
    notes += describe_labels(splits, settings.validation_fraction)
    return Found(name, settings, splits, tuple(notes))


def source_settings(data: Path, label: str | None) -> tuple[DataConfig, list[str]]:
    """The data section for this source, the way the loaders tell sources apart, and notes on it."""
    text = str(data)
    if not data.exists() and text in KERAS_DATASETS:
        return DataConfig(dataset=text), [f"Source: Keras' dataset {text} (loaded by Keras, downloaded if missing)"]
    where, how = written_path(data)
    data = Path(where)  # read as `sweep run` will read it, so that errors name it alike
    if data.suffix.lower() in READERS:
        return table_settings(data, where, label, how)
    if data.suffix.lower() == ".npz":
        task = npz_task(data)
        return DataConfig(dataset="npz", data_dir=where, task=task), [f"Source: an .npz file, {where} ({how})"]
    if data.is_dir() and holds_idx(data):
        return DataConfig(dataset="idx", data_dir=where), [f"Source: a folder of IDX files, {where} ({how})"]
    if data.is_dir():
        size, resized = picture_size(data)
        layout = "train/ and test/ class folders" if has_split_folders(data) else "class folders"
        return (DataConfig(dataset="images", data_dir=where, image_size=size),
                [f"Source: a folder of pictures in {layout}, {where} ({how})", *resized])
    kinds = ("a folder of IDX files or of class folders of pictures, a CSV or Parquet table, an .npz file, or one "
             f"of Keras' datasets ({', '.join(KERAS_DATASETS)})")
    raise DataError(f"{data}: {'not one of the sources' if data.exists() else 'no such file or folder'}; sweep init "
                    f"reads {kinds}")


def written_path(data: Path) -> tuple[str, str]:
    """data.data_dir as `sweep run` finds it: relative to the current folder when inside it, else absolute."""
    absolute = data.expanduser().resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve())), "written relative to this folder"
    except ValueError:
        return str(absolute), "written as an absolute path"


def table_settings(path: Path, where: str, label: str | None, how: str) -> tuple[DataConfig, list[str]]:
    """The label (by --label, by name, else the last column), text columns as categorical, gaps imputed, and
    regression for a numeric label the loader would call a measurement (records.continuous_hint)."""
    frame = read_table(path)
    columns = [str(c) for c in frame.columns]
    if label is not None and label not in columns:
        raise BadInputError(f"--label {label}: {path} has no such column; its columns are {listed(columns)}")
    named = [c for c in columns if c.lower() in LABEL_NAMES]
    chosen = label or (named[0] if named else columns[-1])
    why = "--label" if label else "its name" if named else "the last column; --label NAME picks another"
    column = frame[chosen]
    numeric = _numeric(column) and column.dtype != bool
    task = "regression" if numeric and continuous_hint(column.to_numpy(dtype=np.float64)) else "classification"
    categorical = tuple(c for c in columns if c != chosen and not _numeric(frame[c]))
    gaps = frame.isna().sum()
    missing = "impute" if gaps.any() else "refuse"
    notes = [f"Source: a table, {where} ({how}): {len(frame)} rows, {len(columns) - 1 - len(categorical)} numeric "
             f"feature columns" + (f", text columns {listed(categorical)} (one-hot: data.categorical)"
                                   if categorical else ""),
             f"Label: {chosen!r} ({why})"]
    many = [c for c in categorical if frame[c].nunique() > MANY_CATEGORIES]
    if many:
        notes.append(f"warning: text columns with over {MANY_CATEGORIES} values: {listed(many)}; one-hot encoding "
                     "learns little from so many (an identifier, or free text?): remove them from the table if so")
    if gaps.any():
        notes.append("Missing values in " + ", ".join(f"{c!r} ({n} rows)" for c, n in gaps[gaps > 0].items())
                     + ": data.missing impute (numbers by the mean, text by the most frequent, fitted on train)")
    small = len(frame) < SMALL_TABLE
    return DataConfig(dataset="table", data_dir=where, label=chosen, categorical=categorical, missing=missing,
                      task=task, validation_fraction=0.2 if small else 0.1), notes


def _numeric(column) -> bool:
    """Numbers or booleans, as the table loader takes them without data.categorical."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def npz_task(path: Path) -> str:
    """regression when y_train holds fractions, or numbers the loader would call a measurement."""
    if not path.is_file() or "y_train" not in array_names(path):
        return "classification"  # the loader names what is missing
    labels = read_arrays(path, ["y_train"])["y_train"]
    if labels.dtype.kind not in "iuf":
        return "classification"
    fractional = labels.dtype.kind == "f" and not np.all(np.mod(labels[np.isfinite(labels)], 1) == 0)
    return "regression" if fractional or continuous_hint(labels.reshape(-1)) else "classification"


def picture_size(root: Path) -> tuple[tuple[int, int] | None, list[str]]:
    """data.image_size: None when every picture shares one size of at most MAX_SIDE a side; else the most
    common size, shrunk to fit MAX_SIDE. Read from the pictures' headers; the loader refuses what they lack."""
    from PIL import Image

    folders = [root / "train", root / "test"] if has_split_folders(root) else [root]
    sizes = Counter()
    for files in (files for folder in folders for files in list_classes(folder).values()):
        for path in files:
            try:
                with Image.open(path) as image:
                    sizes[image.size] += 1
            except (OSError, SyntaxError, ValueError):
                return None, []  # not a picture: the loader says which
    (width, height), _ = sizes.most_common(1)[0]
    scale = min(1.0, MAX_SIDE / max(width, height))
    if len(sizes) == 1 and scale == 1.0:
        return None, []
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    why = f"{len(sizes)} different sizes, most often {width}x{height}" if len(sizes) > 1 else f"{width}x{height}"
    return size, [f"Pictures: {why}; data.image_size {list(size)} (height, width) resizes them all"]


def describe_inputs(splits: Splits) -> list[str]:
    inputs, rows = splits.inputs, f"{len(splits.y_train)} training, {len(splits.y_val)} validation, " \
                                  f"{len(splits.y_test)} test"
    if inputs.is_table:
        return [f"Split: {rows} rows"]
    return [f"Inputs: {' x '.join(map(str, inputs.shape))} of {inputs.dtype} ({picture_kind(splits)}); split: {rows}"]


def picture_kind(splits: Splits) -> str:
    shape = splits.inputs.shape
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return "grayscale pictures"
    if len(shape) == 3:
        return f"pictures with {shape[2]} channels"
    return "vectors of features" if len(shape) == 1 else "arrays"


def describe_labels(splits: Splits, validation_fraction: float) -> list[str]:
    """The task and the classes with their training counts; warnings on imbalance and on classes so small
    that validation holds fewer than two of them."""
    if splits.task == "regression":
        y = splits.y_train
        return [f"Task: regression of {splits.class_names[0]!r} (numbers from {y.min():g} to {y.max():g}, mean "
                f"{y.mean():.4g}, sd {y.std():.4g}); the study minimizes val_rmse"]
    counts = np.bincount(np.concatenate([splits.y_train, splits.y_val]), minlength=len(splits.class_names))
    shown = ", ".join(f"{name} {count}" for name, count in zip(splits.class_names[:12], counts))
    more = f" and {len(counts) - 12} more" if len(counts) > 12 else ""
    notes = [f"Task: classification, {len(counts)} classes (training examples each): {shown}{more}"]
    present = counts[counts > 0]
    if present.max() > IMBALANCE * present.min():
        big = int(np.argmax(counts))
        small = min((i for i, count in enumerate(counts) if count), key=lambda i: counts[i])
        notes.append(f"warning: imbalanced classes: {splits.class_names[big]!r} has {counts[big]} examples, "
                     f"{splits.class_names[small]!r} {counts[small]}; accuracy will mostly reflect the large "
                     "classes (gather more of the small ones, or merge them)")
    few = [(name, count) for name, count in zip(splits.class_names, counts) if 0 < count * validation_fraction < 2]
    if few:
        notes.append(f"warning: classes too small to split well: {', '.join(f'{n!r} ({c})' for n, c in few[:10])}"
                     f"; validation ({validation_fraction:g} of training) holds fewer than 2 of each, so their "
                     "score is noise (gather more examples, or merge them)")
    return notes


def family_for(splits: Splits) -> tuple[str, str]:
    """dense for tables, feature vectors and small grayscale pictures (fast, and close to a cnn there); cnn
    for colour or larger pictures, where a flat vector loses what neighbouring pixels say."""
    shape = splits.inputs.shape
    if splits.inputs.image_shape is None:
        return "dense", "a table's rows" if splits.inputs.is_table else "vectors of features, no pixel grid"
    height, width, channels = splits.inputs.image_shape
    if channels == 1 and max(height, width) <= 32:
        return "dense", f"{height}x{width} grayscale pictures: a Dense network is fast and close to a cnn there"
    return "cnn", f"{'x'.join(map(str, shape))} pictures: convolutions see what neighbouring pixels say"


def batch_sizes(rows: int, preferred: tuple[int, ...]) -> list[int]:
    """The preferred batch sizes under a tenth of the training rows, else the largest three that are."""
    fitting = [b for b in BATCHES if b < rows / 10] or [1]
    return [b for b in preferred if b in fitting][-3:] or fitting[-3:]


def search_space(splits: Splits, family: str) -> dict[str, tuple[object, str]]:
    """{hyperparameter: (its entry, a comment)}, sized to the data."""
    rows, regression = len(splits.y_train), splits.task == "regression"
    if family == "cnn":
        space = cnn_space(rows)
    elif splits.inputs.image_shape is not None:
        space = picture_space(rows)
    else:
        space = vector_space(rows, regression, rows + len(splits.y_val) + len(splits.y_test) < SMALL_TABLE)
    if regression:
        space["loss"] = (choice("mse", "huber"), "or mae; on the standardized label (huber's delta: 1 sd)")
        space["restore_best"] = (True, "end with the epoch of the best val_rmse")
    elif splits.inputs.image_shape is not None:
        space["label_smoothing"] = (choice(0.0, 0.1), "softens the class targets; 0.1 often helps pictures")
    return space


def vector_space(rows: int, regression: bool, small: bool) -> dict:
    units = (4, 32) if small and regression else (8, 64) if small else (16, 256)
    return {
        "units": (span("int", *units, log=True), "width of each hidden layer"),
        "hidden_layers": (span("int", 1, 2 if small else 3), "small data: few layers, or it memorizes the rows"),
        "dropout": (span("float", 0.0, 0.3 if small else 0.5), "share of units dropped while training"),
        "activation": (choice("relu", "elu", "tanh"), None),
        "learning_rate": (span("float", 0.0005, 0.01 if small else 0.003, log=True), None),
        "weight_decay": (span("float", 0.001, 0.1, log=True), "shrinks the weights: regularizes"),
        "optimizer": ("adamw", "decoupled weight decay"),
        "epochs": (span("int", *(((30, 100) if regression else (20, 80)) if small else (10, 40))),
                   "few rows make an epoch short, so more of them" if small else None),
        "batch_size": (choice(*batch_sizes(rows, (4, 8, 16, 32) if small else (32, 64, 128))),
                       f"all under a tenth of the {rows} training rows"),
        "preprocessing": (choice("standardize", "normalize"), "the numbers' scaling, fitted on train"),
    }


def picture_space(rows: int) -> dict:
    return {
        "units": (span("int", 64, 512, log=True), "width of each hidden layer"),
        "hidden_layers": (span("int", 1, 3), None),
        "dropout": (span("float", 0.1, 0.5), "share of units dropped while training"),
        "activation": (choice("relu", "gelu", "silu"), None),
        "optimizer": (choice("adam", "nadam", "adamw"), None),
        "learning_rate": (span("float", 0.0003, 0.003, log=True), None),
        "epochs": (span("int", 5, 30), None),
        "batch_size": (choice(*batch_sizes(rows, (64, 128, 256))), f"all under a tenth of the {rows} training "
                       "pictures"),
        "preprocessing": (choice("standardize", "normalize"), "pixels scaled to [0, 1], or per pixel"),
        "lr_schedule": ("cosine", "the learning rate falls to 0 over the epochs"),
        "shift_pixels": (choice(0, 1), "random 1-pixel shifts while training"),
    }


def cnn_space(rows: int) -> dict:
    return {
        "conv_blocks": (span("int", 2, 3), "Conv2D -> batch norm -> activation -> 2x2 pooling, each"),
        "filters": (span("int", 16, 40, log=True), "the first block's; each next block doubles them"),
        "double_filters": (True, None),
        "kernel_size": (3, None),
        "pooling": ("max", None),
        "head_pooling": ("flatten", "flatten learns faster per epoch than global_average"),
        "batch_norm": (True, "a convolutional network trains faster with it"),
        "units": (span("int", 64, 256, log=True), "the Dense head's width"),
        "hidden_layers": (1, None),
        "dropout": (span("float", 0.2, 0.5), None),
        "optimizer": (choice("adam", "adamw"), None),
        "learning_rate": (span("float", 0.0007, 0.003, log=True), None),
        "epochs": (span("int", 8, 14), None),
        "batch_size": (choice(*batch_sizes(rows, (64, 128, 256))), f"all under a tenth of the {rows} training "
                       "pictures"),
        "preprocessing": ("normalize", "pixels scaled to [0, 1]"),
        "lr_schedule": ("cosine", "the learning rate falls to 0 over the epochs"),
        "shift_pixels": (choice(0, 1), "random 1-pixel shifts while training"),
    }


def span(kind: str, low, high, log: bool = False) -> dict:
    return {"type": kind, "low": low, "high": high, **({"log": True} if log else {})}


def choice(*values) -> dict:
    return {"type": "categorical", "choices": list(values)}


def timed_budget(config: SweepConfig, splits: Splits) -> Budget:
    """n_trials and timeout from one timed epoch of the file's middle model, scaled to the training split."""
    params = middle_params(config)
    epoch_s = timed_epoch(config, splits, params)
    trial_s = epoch_s * params.epochs + TRIAL_OVERHEAD_S
    trials = min(TRIALS, max(5, int(MAX_BUDGET_S // trial_s)))
    minutes = trials * trial_s / 60
    timeout = 60 * math.ceil(minutes * 1.25)
    rows = len(splits.y_train)
    timed = f", timed on {TIMED_ROWS}" if rows > TIMED_ROWS else ""
    comment = (f"one epoch of the default model took {epoch_s:.2g} s on this machine ({rows} training rows{timed}); "
               f"{trials} trials of ~{params.epochs} epochs ≈ {minutes:.0f} minutes")
    return Budget(trials, timeout, comment)


def middle_params(config: SweepConfig) -> Hyperparameters:
    """The model in the middle of the search space: each range's middle (geometric for log), each choice's
    middle entry, the fixed values."""
    values = base_values(config.search_space)
    for name, spec in config.search_space.items():
        if isinstance(spec, CategoricalParam):
            values[name] = spec.choices[len(spec.choices) // 2]
        elif isinstance(spec, (IntParam, FloatParam)):
            middle = math.sqrt(spec.low * spec.high) if spec.log else (spec.low + spec.high) / 2
            values[name] = round(middle) if isinstance(spec, IntParam) else middle
        elif not isinstance(spec, FixedParam):
            raise TypeError(f"unknown search-space entry {spec!r}")
    return Hyperparameters.from_dict(values)


def timed_epoch(config: SweepConfig, splits: Splits, params: Hyperparameters) -> float:
    """Seconds for one epoch over the whole training split, built and trained as a trial is. An epoch costs a
    fixed part (Keras' per-epoch work, the validation pass's start) and a part per row; with more rows than
    TIMED_ROWS both are measured, on TIMED_ROWS rows and on a quarter of them, and scaled to the split."""
    from pipeline.tensorflow_setup import load_tensorflow

    load_tensorflow()
    from pipeline.model import Design, build_model
    from pipeline.preprocessing import fit_stats
    from pipeline.training import start_fresh

    rows = min(len(splits.y_train), TIMED_ROWS)
    stats = fit_stats(splits.x_train[:rows], splits.fills_gaps, splits.regression_targets)
    start_fresh(config.study.seed)
    model = build_model(params, splits.inputs, len(splits.class_names), stats, Design(config.model.family, config.task))
    seconds = timed_epochs(model, miniature(splits, rows), params, config, stats)
    if rows == len(splits.y_train):
        return seconds
    quarter = timed_epochs(model, miniature(splits, rows // 4), params, config, stats)
    per_row = (seconds - quarter) / (rows - rows // 4)
    if per_row <= 0:  # too noisy to tell the parts apart: all of it per row, an overestimate
        return seconds * len(splits.y_train) / rows
    return seconds - per_row * rows + per_row * len(splits.y_train)


def miniature(splits: Splits, rows: int) -> Splits:
    """The first `rows` training rows, with validation rows in the split's proportion and a few test rows."""
    validation = max(1, round(rows * len(splits.y_val) / len(splits.y_train)))
    return dataclasses.replace(splits, x_train=splits.x_train[:rows], y_train=splits.y_train[:rows],
                               x_val=splits.x_val[:validation], y_val=splits.y_val[:validation],
                               x_test=splits.x_test[:64], y_test=splits.y_test[:64])


def timed_epochs(model, part: Splits, params: Hyperparameters, config: SweepConfig, stats) -> float:
    """The seconds of an epoch on `part` once traced (the first epoch traces the training and validation
    steps): the fastest of the next three, as other work on the machine only ever slows one down."""
    from pipeline.training import train_and_evaluate

    ends: list[float] = []
    train_and_evaluate(model, part, params.replace(epochs=4), hooks=[lambda *_: ends.append(time.perf_counter())],
                       best_by=(config.study.metric, config.directions[0] == "maximize"), task=config.task,
                       stats=stats)
    return min(np.diff(ends))


def render(found: Found, family: str, why: str, space: dict, budget: Budget | None) -> str:
    """The sweep file: a header of what was found, then every key with a short comment."""
    data, regression = found.data, found.data.task == "regression"
    lines = [f"# Written by `sweep init` from {data.data_dir or data.dataset}. What it found:"]
    lines += [f"#   {note}" for note in found.notes]
    lines += ["# n_trials and timeout are totals for the study: rerunning this file resumes it.", ""]
    if regression:
        lines += [entry("task", "regression", "the label is a number to predict, not a class", indent=""), ""]
    lines += ["study:", *study_lines(found.name, space, budget, regression), ""]
    lines += ["data:", *data_lines(data), ""]
    lines += ["model:", entry("family", family, why)]
    if family == "dense" and found.splits.inputs.image_shape is not None:
        lines.append("  # a convolutional network instead: family: cnn, with the space of "
                     "sweeps/fashion_mnist_cnn.yaml")
    lines += ["", "search_space:"]
    lines += [entry(name, spec, comment) for name, (spec, comment) in space.items()]
    return "\n".join(lines) + "\n"


def study_lines(name: str, space: dict, budget: Budget | None, regression: bool) -> list[str]:
    """The budget (timed, or a plain default), the task's metric, and pruning after a quarter of the fewest
    epochs a trial trains."""
    trials, timeout = (budget.n_trials, budget.timeout) if budget else (TRIALS, UNTIMED_TIMEOUT_S)
    warmup = max(2, space["epochs"][0]["low"] // 4)
    return [entry("name", name, "the study's name; also its MLflow experiment and model"),
            f"  # Budget: {budget.comment}." if budget else
            "  # Budget: not timed (sweep init --no-timing); a plain default, adjust it to your machine.",
            entry("n_trials", trials, "trials in total"),
            entry("timeout", timeout, "seconds in total" + ("; a quarter over the estimate" if budget else "")),
            entry("seed", SEED, None),
            entry("metric", "val_rmse" if regression else "val_accuracy",
                  "or val_mae, val_r2, val_loss" if regression else "or val_loss"),
            entry("pruner", {"type": "median", "startup_trials": 5, "warmup_epochs": warmup},
                  "stops trials below the median so far")]


def data_lines(data: DataConfig) -> list[str]:
    where = "relative to the folder `sweep run` is run from" if data.data_dir and not Path(
        data.data_dir).is_absolute() else "absolute, so it works from any folder"
    lines = [entry("dataset", data.dataset, "idx | images | npz | table, or a Keras dataset's name")]
    if data.data_dir is not None:
        lines.append(entry("data_dir", data.data_dir, where))
    if data.dataset == "table":
        lines += [entry("label", data.label, "the column holding the number" if data.task == "regression"
                        else "the column holding the class"),
                  entry("categorical", list(data.categorical), "text columns, one-hot encoded inside the model"),
                  entry("missing", data.missing, "refuse | drop (those rows) | impute (fitted on train)"),
                  entry("test_fraction", data.test_fraction, "kept apart as the test set")]
    if data.dataset == "images":
        lines += [entry("image_size", list(data.image_size) if data.image_size else None,
                        "[height, width] to resize to; null = as the files are"),
                  entry("test_fraction", data.test_fraction, "without train/ and test/ folders: the test part")]
    if data.dataset == "idx":
        lines.append("  # Fashion-MNIST or MNIST? dataset: fashion_mnist (or mnist), this data_dir: named classes")
    lines.append(entry("validation_fraction", data.validation_fraction, "of training, for choosing"))
    return lines


def entry(key: str, value, comment: str | None, indent: str = "  ") -> str:
    """`  key: value  # comment`, the value in YAML's flow style, comments lined up."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000, allow_unicode=True)
    line = f"{indent}{key}: {text.removesuffix(chr(10)).removesuffix('...').strip()}"
    return f"{line.ljust(COMMENT_COLUMN - 1)} # {comment}" if comment else line


def listed(names) -> str:
    names = [repr(str(n)) for n in names]
    return ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
