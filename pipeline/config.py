"""Sweep files: read with yaml.safe_load and validated into frozen, typed objects before anything trains.

Every error names the file, the dotted key and what is allowed, so a bad sweep fails in the first
second instead of an hour into a study.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from pipeline import examples, keys, stores
from pipeline.errors import SweepConfigError
from pipeline.hyperparameters import (FAMILY_ONLY, NAMES, TASK_ONLY, CategoricalParam, FixedParam, ParamSpec, misfit,
                                     parse_param)
from pipeline.validation import Checker, quote

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "successive_halving", "hyperband", "none")
PRUNE_BY = ("epoch", "fraction")  # the median pruner's comparison: the same epoch, or the same share of the schedule
# What a model predicts (pipeline.tasks), and the validation metrics each task's study can optimize, with
# their direction; the first is the default `study.metric`.
TASKS = ("classification", "regression")
TASK_OBJECTIVES = {
    "classification": {"val_accuracy": "maximize", "val_loss": "minimize"},
    "regression": {"val_rmse": "minimize", "val_mae": "minimize", "val_r2": "maximize", "val_loss": "minimize"},
}
# The test metrics each task's trials log, with their direction; the first is the headline every summary,
# report, comparison and export shows. pipeline.tasks' TEST_METRICS say the same beside the model code (a test
# checks it); this copy lets the commands that never import TensorFlow read them.
TASK_TEST_METRICS = {
    "classification": {keys.TEST_ACCURACY: "maximize", keys.TEST_LOSS: "minimize"},
    "regression": {keys.TEST_RMSE: "minimize", keys.TEST_MAE: "minimize", keys.TEST_R2: "maximize"},
}
# The network between the preprocessing layers and the task's output (pipeline.families); `model.builder`
# names the user's own function instead (family "builder").
FAMILIES = ("dense", "cnn")
# What shipping a model costs, as a sweep file names it: (the measurement it reads, the constraint capping it).
QUANTITIES = {"latency_ms": (keys.LATENCY_B1, "max_latency_ms"), "params_count": (keys.PARAMS_COUNT, "max_params"),
              "model_mb": (keys.MODEL_MB, "max_model_mb")}
LIMIT_OF = {limit: measurement for measurement, limit in QUANTITIES.values()}
# Keras' datasets by name, then the sources that are the user's own files (pipeline.data.SOURCES, checked
# by a test: config stays free of the data libraries so that `sweep --help` starts at once).
DATASETS = ("fashion_mnist", "mnist", "cifar10", "cifar100", "idx", "images", "npz", "table")
FOLDER_SOURCES = ("idx", "images", "npz", "table")
REGRESSION_SOURCES = ("npz", "table")  # the sources whose labels can be numbers
COLORS = ("grayscale", "rgb")
MISSING = ("refuse", "drop", "impute")  # tables: what a missing value gets
# A journal file, not SQLite: several local worker processes can share it safely, so `--workers N` needs
# no other storage; optuna-dashboard reads it as it is (`optuna-dashboard mlruns/optuna.journal`).
DEFAULT_STORAGE = "journal:///mlruns/optuna.journal"
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
# Far above any real sweep file (a few hundred values, five levels deep), far below what hurts.
MAX_FILE_BYTES, MAX_NODES, MAX_DEPTH = 1_000_000, 10_000, 8
# What errors name a sweep given as a Python dict, which has no file; its relative paths are the current folder's.
DICT_SOURCE = Path("<sweep dict>")
# MLflow refuses these in registered model names.
MODEL_NAME_FORBIDDEN = ("/", ":")


@dataclass(frozen=True)
class PrunerConfig:
    """How trials are cut short: `type`, plus (median only) trials and epochs before pruning starts, and
    whether trials are compared at the same epoch or the same fraction of their schedules (`by`)."""

    type: str = "median"
    startup_trials: int = 3
    warmup_epochs: int = 2
    by: str = "epoch"


@dataclass(frozen=True)
class Constraints:
    """Upper limits on the served model (pipeline.objectives); None means no limit. Latency is milliseconds
    per image at batch 1."""

    max_params: int | None = None
    max_latency_ms: float | None = None
    max_model_mb: float | None = None

    def limits(self) -> dict[str, float]:
        """{measurement key: limit} for the limits given."""
        return {LIMIT_OF[name]: value for name, value in vars(self).items() if value is not None}

    def excess(self, measured: dict) -> dict[str, float]:
        """Optuna's convention: one value per limit (named as in the sweep file), <= 0 when met. Relative, so
        that limits in different units weigh alike when naming the closest trial."""
        return {name: (measured[LIMIT_OF[name]] - limit) / limit for name, limit in vars(self).items()
                if limit is not None}

    def __bool__(self) -> bool:
        return bool(self.limits())


@dataclass(frozen=True)
class ConfirmConfig:
    """Retrain the `top_k` best configurations with `seeds` seeds each (the search trial is one)."""

    top_k: int = 3
    seeds: int = 3


@dataclass(frozen=True)
class WarmStart:
    """Another study's `top_k` best configurations as this study's first trials (pipeline.first_trials)."""

    study: str
    storage: str | None = None  # None: this study's own storage
    top_k: int = 3


@dataclass(frozen=True)
class StudyConfig:
    name: str
    direction: str = "maximize"
    metric: str = "val_accuracy"
    n_trials: int = 20
    timeout: float | None = None
    seed: int = 42
    sampler: str = "tpe"
    pruner: PrunerConfig = PrunerConfig()
    storage: str = DEFAULT_STORAGE
    threads: int | None = None
    max_failures_in_a_row: int = 3
    trials_per_process: int = 10
    confirm: ConfirmConfig | None = None  # run after the search; `sweep confirm` runs it on a finished study
    objectives: tuple[str, ...] = ()  # several: a multi-objective study, `metric` first; () = `metric` alone
    constraints: Constraints = Constraints()
    start_with: tuple[Mapping[str, Any], ...] = ()  # configurations run first, before the sampler takes over
    warm_start: WarmStart | None = None


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fashion_mnist"  # a Keras dataset's name, or idx | images | npz (then data_dir is required)
    data_dir: str | None = None  # the source's folder or file; for Keras' datasets, its files offline
    validation_fraction: float = 0.1
    subset: int | None = None
    test_subset: int | None = None
    image_size: tuple[int, int] | None = None  # images: [height, width] to resize to
    color: str | None = None  # images: grayscale | rgb; None = as the files are
    test_fraction: float = 0.2  # images without train/ and test/ folders, tables without a test file: the test part
    label: str | None = None  # tables: the column holding the class
    categorical: tuple[str, ...] = ()  # tables: columns one-hot encoded inside the model
    missing: str = "refuse"  # tables: refuse | drop (the rows) | impute (mean or most frequent, fitted on train)
    test_file: str | None = None  # tables: the test rows; relative to the table's folder; None = split them off
    task: str = "classification"  # the sweep file's top-level `task`: what the label is (classes or numbers)


@dataclass(frozen=True)
class ModelConfig:
    """`model: {family: dense | cnn}`, or `model: {builder: models/my_net.py:build}` (family "builder"): a file
    relative to the sweep file's folder and the function in it that builds the network."""

    family: str = "dense"
    builder: str | None = None

    @property
    def builder_file(self) -> str | None:
        return None if self.builder is None else self.builder.rpartition(":")[0]

    @property
    def builder_function(self) -> str | None:
        return None if self.builder is None else self.builder.rpartition(":")[2]


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment: str | None = None
    registered_model: str | None = None


@dataclass(frozen=True)
class SweepConfig:
    path: Path
    study: StudyConfig
    data: DataConfig
    tracking: TrackingConfig
    search_space: Mapping[str, ParamSpec] = field(default_factory=dict)
    model: ModelConfig = ModelConfig()
    text: str = field(default="", repr=False, compare=False)  # the YAML it was read from, which the study keeps

    @property
    def task(self) -> str:
        """classification | regression; kept with the data settings, which read the label by it."""
        return self.data.task

    @property
    def test_metric(self) -> str:
        """The task's headline test metric (classification: test_accuracy; regression: test_rmse)."""
        return next(iter(TASK_TEST_METRICS[self.task]))

    @property
    def folder(self) -> Path | None:
        """The sweep file's folder: a data folder inside it is recorded relative to it, so a store shared with
        colleagues does not spread one person's home paths. None for a sweep given as a dict, whose data is
        recorded absolute: the study's copy of it must work from any folder."""
        return None if self.path == DICT_SOURCE else self.path.parent

    @property
    def builder_path(self) -> Path | None:
        """model.builder's file: as written when absolute, else relative to the sweep file's folder."""
        return None if self.model.builder is None else self.path.parent / Path(self.model.builder_file).expanduser()

    @property
    def directions(self) -> list[str]:
        """The study's direction per objective: the metric's, then minimize for every cost."""
        return [self.study.direction] + ["minimize"] * (len(self.study.objectives) - 1)

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.study.name

    @property
    def storage_identity(self) -> str:
        """The study storage as every process and machine names it (a study is its name in its storage)."""
        return stores.identity(stores.resolve_uri(self.study.storage, create=False))

    @property
    def registered_model_name(self) -> str:
        return self.tracking.registered_model or self.study.name

    def searched_names(self) -> list[str]:
        return [k for k, s in self.search_space.items() if not isinstance(s, FixedParam)]


def check_model_name(name: str, where: str) -> str:
    """A name MLflow's registry takes; refused early, not after an export has evaluated its model."""
    if any(c in name for c in MODEL_NAME_FORBIDDEN) or name.strip() in ("", ".", ".."):
        raise SweepConfigError(f"{where}: {quote(name)} cannot name a registered model (MLflow refuses '/' and ':' "
                               "in names); set tracking.registered_model in the sweep file or pass --name")
    return name


def check_run(config: SweepConfig, workers: int) -> None:
    """What `sweep run` needs beyond a valid file, checked before any process starts: a study storage its
    workers (pipeline.api.Sweep checks their count) can share, and store folders that exist (only ./mlruns is
    made)."""
    if workers > 1 and stores.is_sqlite(config.study.storage):
        raise SweepConfigError(f"{config.path}: --workers {workers} needs a study storage several processes can "
                               "share, not a SQLite file: leave out --storage and study.storage (a journal file "
                               "under mlruns/), or pass --storage postgresql://... (several machines)")
    for uri in (config.study.storage, config.tracking.tracking_uri):
        stores.check_folder(uri)


def with_overrides(config: SweepConfig, **overrides: Any) -> SweepConfig:
    """Apply command-line overrides (None means 'not given'), validating them like the file."""
    sections = {"study": {}, "data": {}, "tracking": {}}
    where = {"n_trials": "study", "timeout": "study", "storage": "study",
             "tracking_uri": "tracking", "data_dir": "data"}
    for key, value in overrides.items():
        if value is not None:
            sections[where[key]][key] = value
    checker = Checker(config.path)
    for key, option in (("storage", "--storage"), ("tracking_uri", "--tracking-uri"), ("data_dir", "--data-dir")):
        if overrides.get(key) is not None:
            checker.text(overrides[key], option)
    if "n_trials" in sections["study"]:
        checker.positive_int(sections["study"]["n_trials"], "--n-trials")
    if "timeout" in sections["study"]:
        checker.positive_number(sections["study"]["timeout"], "--timeout")
    return dataclasses.replace(
        config,
        study=dataclasses.replace(config.study, **sections["study"]),
        data=dataclasses.replace(config.data, **sections["data"]),
        tracking=dataclasses.replace(config.tracking, **sections["tracking"]),
    )


def with_confirm(config: SweepConfig, top_k: int | None, seeds: int | None) -> SweepConfig:
    """`sweep confirm`'s --top-k and --seeds over the file's study.confirm (or its defaults), validated."""
    settings = config.study.confirm or ConfirmConfig()
    confirm = confirm_settings(config.path, settings.top_k if top_k is None else top_k,
                               settings.seeds if seeds is None else seeds)
    return dataclasses.replace(config, study=dataclasses.replace(config.study, confirm=confirm))


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file, or the shipped example a bare name means (`smoke`); raise
    SweepConfigError naming file, key and what is allowed."""
    if examples.is_bare_name(str(path)):
        return examples.with_own_data(load_sweep(examples.locate(str(path))))
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"{path}: no such sweep file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SweepConfigError(f"{path}: {path.stat().st_size} bytes; a sweep file is at most {MAX_FILE_BYTES}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepConfigError(f"{path}: cannot read the sweep file ({exc})") from None
    return parse_sweep_text(text, path)


def parse_sweep_text(text: str, path: Path) -> SweepConfig:
    """Validate sweep YAML held in memory (a file's text, or the copy a study stores of it)."""
    if len(text) > MAX_FILE_BYTES:
        raise SweepConfigError(f"{path}: {len(text)} characters; a sweep file is at most {MAX_FILE_BYTES}")
    try:
        _check_size(yaml.compose(text, Loader=yaml.SafeLoader), path)
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise SweepConfigError(f"{path}: line {exc.line}: {quote(exc.key)} appears twice in one mapping (first on "
                               f"line {exc.first}); YAML would keep only the last, so remove one") from None
    except yaml.YAMLError as exc:
        raise SweepConfigError(f"{path}: not valid YAML: {exc}") from None
    return dataclasses.replace(parse_sweep(raw, path), text=text)


def parse_sweep_dict(spec: Any, path: Path = DICT_SOURCE) -> SweepConfig:
    """A sweep given as a Python dict (a notebook's), validated exactly as a file: written out as the YAML a file
    would hold and read back, so the study keeps that text and `--study NAME` commands can use it. Values must be
    plain data (dicts, lists or tuples, strings, numbers, booleans, None); anything else is refused by its key."""
    if not isinstance(spec, Mapping):
        raise SweepConfigError(f"{path}: a sweep is a dict of sections (study, data, search_space, ...), got "
                               f"{type(spec).__name__}")
    return parse_sweep_text(yaml.safe_dump(_plain(spec, ""), sort_keys=False), path)


def _plain(value: Any, key: str) -> Any:
    """`value` as YAML's plain data (tuples as lists, NumPy's scalars as numbers), or refused naming its key."""
    if isinstance(value, Mapping):
        return {k: _plain(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if value is None or type(value) in (str, bool, int, float):  # NumPy's float64 and str_ are subclasses
        return value
    if hasattr(value, "tolist") and callable(value.tolist):  # a NumPy scalar or array, a pandas Series
        return _plain(value.tolist(), key)
    if isinstance(value, Path):
        return str(value)
    raise SweepConfigError(f"{DICT_SOURCE}: {key or '(top level)'}: {type(value).__name__} {value!r} is not plain "
                           "data; give strings, numbers, booleans, lists and dicts, as a sweep file would")


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping: yaml.safe_load silently keeps the last, which hides a typo'd edit."""

    def __init__(self, key: Any, line: int, first: int):
        super().__init__(f"{key!r} on line {line} repeats line {first}")
        self.key, self.line, self.first = key, line, first


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing duplicate keys. Merge keys (`<<: *base`) may still be overridden:
    a key written beside a merge is the YAML way to change one value of the merged mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first_lines:
                    raise DuplicateKeyError(key, key_node.start_mark.line + 1, first_lines[key])
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                break
            first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _check_size(root: yaml.Node | None, path: Path) -> None:
    """Refuse a document that expands to more nodes, or nests deeper, than any sweep file needs, before it
    is built: YAML aliases can make a few lines expand to gigabytes (an "alias bomb")."""
    count, stack = 0, [(root, 1)] if root is not None else []
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES or depth > MAX_DEPTH:
            raise SweepConfigError(f"{path}: the YAML expands to more than {MAX_NODES} values or nests deeper than "
                                   f"{MAX_DEPTH} levels (repeated aliases?); a sweep file needs far less")
        if isinstance(node, yaml.MappingNode):
            stack += [(child, depth + 1) for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(child, depth + 1) for child in node.value]


def parse_sweep(raw: Any, path: Path) -> SweepConfig:
    check = Checker(path)
    top = check.mapping(raw, "(top level)",
                        allowed=("study", "data", "tracking", "task", "model", "search_space"))
    task = check.choice(top.get("task", "classification"), "task", TASKS)
    model = _parse_model(check, check.mapping(top.get("model", {}), "model"))
    study = _parse_study(check, check.mapping(top.get("study"), "study", required=True), task)
    data = dataclasses.replace(_parse_data(check, check.mapping(top.get("data", {}), "data")), task=task)
    tracking = _parse_tracking(check, check.mapping(top.get("tracking", {}), "tracking"))
    search_space = _parse_space(check, top.get("search_space", {}), model)
    _check_images_only(check, data, search_space)
    _check_family(check, model, data, search_space)
    _check_task(check, task, data, search_space)
    _check_start_with(check, study, search_space)
    return SweepConfig(path, study, data, tracking, search_space, model)


def _parse_model(check: Checker, raw: dict) -> ModelConfig:
    """`family` or `builder`, not both: a builder is the whole network."""
    check.keys(raw, "model", ModelConfig)
    if "builder" not in raw:
        return ModelConfig(family=check.choice(raw.get("family", "dense"), "model.family", FAMILIES))
    if "family" in raw:
        check.fail("model.family", "cannot be combined with model.builder (the builder makes the whole network)")
    builder = check.text(raw["builder"], "model.builder")
    file, _, function = builder.rpartition(":")
    if not file.strip() or not function.isidentifier():
        check.fail("model.builder", f"must be 'path/to/file.py:function', got {check.quote(builder)}")
    return ModelConfig(family="builder", builder=builder)


def _parse_space(check: Checker, raw: Any, model: ModelConfig) -> dict[str, ParamSpec]:
    """The built-in hyperparameters; with a builder, also its own entries (any other name), passed to it."""
    space = check.mapping(raw, "search_space", allowed=NAMES if model.builder is None else ())
    for name in space:
        if name not in NAMES and not (isinstance(name, str) and name.isidentifier()):
            check.fail(f"search_space.{name}", "a builder's own entry is named like a Python variable (letters, "
                       f"digits and _, not first a digit); the built-in ones are {', '.join(NAMES)}")
    return {name: parse_param(check, name, spec) for name, spec in space.items()}


def _check_images_only(check: Checker, data: DataConfig, space: Mapping[str, ParamSpec]) -> None:
    """Shifting pixels means nothing to a table's rows."""
    if data.dataset == "table" and _highest(space.get("shift_pixels")) > 0:
        check.fail("search_space.shift_pixels", "shifts images; data.dataset 'table' has rows, not images (use 0)")


def _check_family(check: Checker, model: ModelConfig, data: DataConfig, space: Mapping[str, ParamSpec]) -> None:
    """A cnn needs pixels (an npz of flat features is refused once it is loaded: pipeline.trial_loop), and a
    family's own hyperparameters mean nothing to another family's network. A builder may read any of them."""
    if model.family == "cnn" and data.dataset == "table":
        check.fail("model.family", "'cnn' convolves over images; data.dataset 'table' has rows, not images "
                   "(use model.family dense)")
    for name in space:
        owner = FAMILY_ONLY.get(name, model.family)
        if model.family in FAMILIES and owner != model.family:
            check.fail(f"search_space.{name}", f"applies to model.family {owner} only; this sweep's family is "
                       f"{model.family} (set model.family: {owner}, or leave {name} out)")


def _check_task(check: Checker, task: str, data: DataConfig, space: Mapping[str, ParamSpec]) -> None:
    """Numbers to predict come from a table's label column or an npz's y arrays (images' labels are classes);
    the loss is chosen for a regression only (a classifier trains on cross-entropy)."""
    if task == "regression" and data.dataset not in REGRESSION_SOURCES:
        check.fail("task", f"'regression' predicts numbers from data.dataset {' or '.join(REGRESSION_SOURCES)}; "
                   f"{data.dataset!r} has classes (use task: classification)")
    why = {"loss": "a classifier trains on cross-entropy", "label_smoothing": "it softens class targets"}
    for name in space:
        owner = TASK_ONLY.get(name, task)
        if owner != task:
            check.fail(f"search_space.{name}", f"applies to task {owner} only; {why[name]} (set task: {owner}, or "
                       f"leave {name} out)")


def _highest(spec: ParamSpec | None) -> float:
    """The largest value a search-space entry can give (0 when the entry is absent)."""
    if spec is None:
        return 0
    if isinstance(spec, FixedParam):
        return spec.value
    if isinstance(spec, CategoricalParam):
        return max(spec.choices)
    return spec.high


def _parse_study(check: Checker, raw: dict, task: str) -> StudyConfig:
    check.keys(raw, "study", StudyConfig)
    metrics = TASK_OBJECTIVES[task]
    objectives = _parse_objectives(check, raw.get("objectives"), metrics)
    constraints = _parse_constraints(check, raw.get("constraints"), objectives)
    metric = check.choice(raw.get("metric", objectives[0] if objectives else next(iter(metrics))), "study.metric",
                          tuple(metrics))
    if objectives and metric != objectives[0]:
        check.fail("study.metric", f"is {metric!r} but study.objectives starts with {objectives[0]!r}; leave it out")
    direction = check.choice(raw.get("direction", metrics[metric]), "study.direction", (metrics[metric],))
    timeout = raw.get("timeout")
    return StudyConfig(
        name=check.text(raw.get("name"), "study.name"),
        direction=direction,
        metric=metric,
        n_trials=check.positive_int(raw.get("n_trials", 20), "study.n_trials"),
        timeout=None if timeout is None else check.positive_number(timeout, "study.timeout"),
        seed=check.integer(raw.get("seed", 42), "study.seed"),
        sampler=check.choice(raw.get("sampler", "tpe"), "study.sampler", SAMPLERS),
        pruner=_parse_pruner(check, raw.get("pruner", "none" if objectives else "median"), objectives),
        storage=check.text(raw.get("storage", DEFAULT_STORAGE), "study.storage"),
        threads=None if raw.get("threads") is None else check.positive_int(raw["threads"], "study.threads"),
        max_failures_in_a_row=check.positive_int(raw.get("max_failures_in_a_row", 3), "study.max_failures_in_a_row"),
        trials_per_process=check.non_negative_int(raw.get("trials_per_process", 10), "study.trials_per_process"),
        confirm=_parse_confirm(check, raw.get("confirm")),
        objectives=objectives,
        constraints=constraints,
        start_with=_parse_start_with(check, raw.get("start_with")),
        warm_start=_parse_warm_start(check, raw.get("warm_start")),
    )


def _parse_start_with(check: Checker, raw: Any) -> tuple[Mapping[str, Any], ...]:
    """`study.start_with`: a list of configurations, each a mapping of searched names to values (checked against
    the search space once it is read: _check_start_with)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        check.fail("study.start_with", f"must be a list of configurations (name: value mappings), got "
                   f"{check.quote(raw)}")
    return tuple(check.mapping(entry, f"study.start_with[{index}]", required=True) for index, entry in enumerate(raw))


def _parse_warm_start(check: Checker, raw: Any) -> WarmStart | None:
    """`study.warm_start: {study: NAME, storage: URL, top_k: K}`; the storage defaults to this study's."""
    if raw is None:
        return None
    raw = check.mapping(raw, "study.warm_start")
    check.keys(raw, "study.warm_start", WarmStart)
    storage = raw.get("storage")
    return WarmStart(study=check.text(raw.get("study"), "study.warm_start.study"),
                     storage=None if storage is None else check.text(storage, "study.warm_start.storage"),
                     top_k=check.positive_int(raw.get("top_k", 3), "study.warm_start.top_k"))


def _check_start_with(check: Checker, study: StudyConfig, space: Mapping[str, ParamSpec]) -> None:
    """Each configuration names searched parameters only, with values the space can draw: a value the sampler
    could never suggest would make the first trials a study of something else."""
    for index, entry in enumerate(study.start_with):
        for name, value in entry.items():
            key = f"study.start_with[{index}].{name}"
            if name not in space:
                check.fail(key, f"is not in search_space; allowed: {', '.join(space) or '(an empty space)'}")
            reason = misfit(space[name], value)
            if reason:
                check.fail(key, f"{value!r} {reason}")


def export_limits(max_params: Any, max_latency_ms: Any, max_model_mb: Any) -> Constraints:
    """`sweep export --max-params N --max-latency-ms X --max-model-mb Y`, each finite and above zero when given
    (argparse's float() takes "inf" and "nan", which no measurement can be compared with)."""
    check = Checker(Path("sweep export"))
    given = {"max_params": max_params, "max_latency_ms": max_latency_ms, "max_model_mb": max_model_mb}
    for key, value in given.items():
        option = f"--{key.replace('_', '-')}"
        kind = numbers.Integral if key == "max_params" else numbers.Real  # the API's callers pass any object
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            check.fail(option, f"must be {'a whole' if key == 'max_params' else 'a'} number, got {value!r}")
        if value is not None and not math.isfinite(value):
            check.fail(option, f"must be a finite number, got {value}")
        if value is not None and not value > 0:
            check.fail(option, f"must be above 0, got {value}")
    return Constraints(**given)


def _parse_objectives(check: Checker, raw: Any, metrics: Mapping[str, str]) -> tuple[str, ...]:
    """`[val_accuracy, latency_ms]`: the validation metric first, then what the model costs to ship."""
    if raw is None:
        return ()
    allowed = f"a validation metric ({', '.join(metrics)}) then one or more of {', '.join(QUANTITIES)}"
    if not isinstance(raw, list) or len(raw) < 2 or len(set(map(str, raw))) != len(raw):
        check.fail("study.objectives", f"must be a list of distinct names, {allowed}; got {check.quote(raw)}")
    check.choice(raw[0], "study.objectives[0]", tuple(metrics))
    for index, name in enumerate(raw[1:], start=1):
        check.choice(name, f"study.objectives[{index}]", tuple(QUANTITIES))
    return tuple(raw)


def _parse_constraints(check: Checker, raw: Any, objectives: tuple[str, ...]) -> Constraints:
    """Limits on the served model, each above zero; a quantity is optimized or capped, not both."""
    raw = check.mapping(raw, "study.constraints")
    check.keys(raw, "study.constraints", Constraints)
    limits = {}
    for key, value in raw.items():
        where = f"study.constraints.{key}"
        number = check.positive_int(value, where) if key == "max_params" else check.number(value, where)
        if number <= 0:
            check.fail(where, f"must be above 0, got {value}")
        limits[key] = number
    for name in objectives[1:]:
        if QUANTITIES[name][1] in limits:
            check.fail(f"study.constraints.{QUANTITIES[name][1]}", f"caps {name}, which study.objectives already "
                       "minimizes; keep one: the objective (a Pareto front) or the limit (the most accurate model "
                       "under it)")
    return Constraints(**limits)


def _parse_confirm(check: Checker, raw: Any) -> ConfirmConfig | None:
    if raw is None:
        return None
    raw = check.mapping(raw, "study.confirm")
    check.keys(raw, "study.confirm", ConfirmConfig)
    return confirm_settings(check.path, raw.get("top_k", 3), raw.get("seeds", 3),
                            ("study.confirm.top_k", "study.confirm.seeds"))


def confirm_settings(path: Path, top_k: Any, seeds: Any, names: tuple[str, str] = ("--top-k", "--seeds")
                     ) -> ConfirmConfig:
    """How many configurations to confirm, and with how many seeds (the search trial counts as one)."""
    check = Checker(path)
    top_k = check.positive_int(top_k, names[0])
    if check.integer(seeds, names[1]) < 2:
        check.fail(names[1], f"must be at least 2 (the search trial is the first seed), got {seeds}")
    return ConfirmConfig(top_k, seeds)


def _parse_pruner(check: Checker, raw: Any, objectives: tuple[str, ...] = ()) -> PrunerConfig:
    """`pruner: median` or `pruner: {type: median, startup_trials: 3, warmup_epochs: 2, by: epoch}`."""
    kind = raw.get("type", "median") if isinstance(raw, dict) else raw
    if objectives and kind != "none":
        check.fail("study.pruner", "Optuna cannot prune a multi-objective study (a trial's intermediate values "
                   "rank it on one objective only); set pruner: none, or use study.constraints with one objective "
                   "to keep pruning")
    if not isinstance(raw, dict):
        return PrunerConfig(check.choice(raw, "study.pruner", PRUNERS))
    check.keys(raw, "study.pruner", PrunerConfig)
    defaults = PrunerConfig()
    counts = {}
    for key in ("startup_trials", "warmup_epochs"):
        value = check.integer(raw.get(key, getattr(defaults, key)), f"study.pruner.{key}")
        if value < 0:
            check.fail(f"study.pruner.{key}", f"must be 0 or more, got {value}")
        counts[key] = value
    kind = check.choice(raw.get("type", "median"), "study.pruner.type", PRUNERS)
    by = check.choice(raw.get("by", defaults.by), "study.pruner.by", PRUNE_BY)
    if by != defaults.by and kind != "median":
        check.fail("study.pruner.by", f"only the median pruner compares by {by}; {kind} has its own rungs")
    return PrunerConfig(kind, **counts, by=by)


def _parse_data(check: Checker, raw: dict) -> DataConfig:
    check.keys(raw, "data", tuple(f.name for f in dataclasses.fields(DataConfig) if f.name != "task"))
    fraction = check.number(raw.get("validation_fraction", 0.1), "data.validation_fraction")
    if not 0 < fraction < 0.5:
        check.fail("data.validation_fraction", f"must be in (0, 0.5), got {fraction}")
    data_dir, color = raw.get("data_dir"), raw.get("color")
    test_fraction = check.number(raw.get("test_fraction", 0.2), "data.test_fraction")
    if not 0 < test_fraction < 0.9:
        check.fail("data.test_fraction", f"must be in (0, 0.9), got {test_fraction}")
    return DataConfig(
        dataset=check.choice(raw.get("dataset", "fashion_mnist"), "data.dataset", DATASETS),
        data_dir=None if data_dir is None else check.text(data_dir, "data.data_dir"),
        validation_fraction=fraction,
        subset=_optional_min(check, raw.get("subset"), "data.subset", 100),
        test_subset=_optional_min(check, raw.get("test_subset"), "data.test_subset", 10),
        image_size=_image_size(check, raw.get("image_size")),
        color=None if color is None else check.choice(color, "data.color", COLORS),
        test_fraction=test_fraction,
        **_table_keys(check, raw),
    )


def _table_keys(check: Checker, raw: dict) -> dict:
    """label, categorical, missing and test_file: meaningful for `dataset: table` only, required label."""
    given = [key for key in ("label", "categorical", "missing", "test_file") if key in raw]
    if raw.get("dataset") != "table":
        if given:
            check.fail(f"data.{given[0]}", "applies to data.dataset 'table' only")
        return {}
    categorical = raw.get("categorical", [])
    if not isinstance(categorical, list):
        check.fail("data.categorical", f"must be a list of column names, got {check.quote(categorical)}")
    test_file, label = raw.get("test_file"), raw.get("label")
    if label is None:
        check.fail("data.label", "data.dataset 'table' needs the name of the column that holds the class")
    if label in categorical:
        check.fail("data.categorical", f"{check.quote(label)} is the label column, not a feature")
    return {"label": check.text(label, "data.label"),
            "categorical": tuple(check.text(c, "data.categorical") for c in categorical),
            "missing": check.choice(raw.get("missing", "refuse"), "data.missing", MISSING),
            "test_file": None if test_file is None else check.text(test_file, "data.test_file")}


def _image_size(check: Checker, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        check.fail("data.image_size", f"must be [height, width], got {check.quote(value)}")
    return tuple(check.positive_int(side, "data.image_size") for side in value)


def check_data_source(config: "SweepConfig") -> None:
    """A source that is the user's own files needs them named (in the file or with --data-dir)."""
    if config.data.dataset in FOLDER_SOURCES and config.data.data_dir is None:
        raise SweepConfigError(f"{config.path}: data.data_dir: data.dataset '{config.data.dataset}' reads the "
                               "user's own files; name them with data.data_dir or --data-dir")


def _optional_min(check: Checker, value: Any, key: str, minimum: int) -> int | None:
    if value is None:
        return None
    value = check.integer(value, key)
    if value < minimum:
        check.fail(key, f"must be at least {minimum} images (one class needs several), got {value}")
    return value


def _parse_tracking(check: Checker, raw: dict) -> TrackingConfig:
    check.keys(raw, "tracking", TrackingConfig)
    optional = {k: raw.get(k) for k in ("experiment", "registered_model")}
    tracking = TrackingConfig(
        tracking_uri=check.text(raw.get("tracking_uri", DEFAULT_TRACKING_URI), "tracking.tracking_uri"),
        **{k: None if v is None else check.text(v, f"tracking.{k}") for k, v in optional.items()},
    )
    if tracking.registered_model is not None:
        check_model_name(tracking.registered_model, f"{check.path}: tracking.registered_model")
    return tracking


