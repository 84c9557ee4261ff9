"""The hyperparameters, in one place: each one's name, domain, default, validation and Optuna suggestion.

The defaults are the reference tutorial's model. The sweep file's `search_space` entries are parsed here
into typed ranges, choices and fixed values, and this is the only module that calls `trial.suggest_*`;
the model builder only ever sees the plain `Hyperparameters` a trial ends up with, so the best model can
always be rebuilt from its stored values. Optuna is never imported: a trial is whatever has `suggest_*`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

# Names Keras 3 resolves with keras.activations.get / keras.optimizers.get (a test checks this).
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu", "silu", "swish", "leaky_relu",
               "softplus", "mish")
OPTIMIZERS = ("adam", "adamw", "nadam", "adamax", "rmsprop", "sgd", "adagrad", "adadelta", "lion")
PREPROCESSING = ("normalize", "standardize")
LR_SCHEDULES = ("constant", "cosine", "plateau")
POOLINGS = ("max", "average")  # the cnn family's pooling after each block
HEAD_POOLINGS = ("global_average", "flatten")  # the cnn family's step from feature maps to its Dense head
KERNEL_SIZES = (3, 5)
LOSSES = ("mse", "huber", "mae")  # regression; classification always trains on cross-entropy


@dataclass(frozen=True)
class Hyperparameters:
    """One trial's complete settings; every trial logs all of them, so runs line up in the UI.

    The second group are training levers (docs/benchmarks.md, row l, measures each); their defaults leave
    the reference model as it was.
    """

    units: int = 128
    hidden_layers: int = 1
    dropout: float = 0.2
    activation: str = "relu"
    optimizer: str = "adam"
    learning_rate: float = 0.001
    epochs: int = 5
    batch_size: int = 32
    preprocessing: str = "normalize"

    batch_norm: bool = False  # Dense -> BatchNormalization -> activation in each hidden layer
    weight_decay: float = 0.0  # decoupled, in the optimizer; 0 keeps the optimizer's own (AdamW: 0.004)
    label_smoothing: float = 0.0
    lr_schedule: str = "constant"  # cosine: to 0 over the epochs, per epoch; plateau: halve when val_loss stalls
    restore_best: bool = False  # end with the weights of the best epoch (by the study's metric)
    shift_pixels: int = 0  # images: random shifts of up to this many pixels while training
    jit_compile: bool = False  # XLA-compile the training step

    # model.family: cnn (pipeline.families.cnn): conv blocks before the Dense head above
    conv_blocks: int = 2
    filters: int = 32  # the first block's; each next block doubles them when double_filters
    double_filters: bool = True
    kernel_size: int = 3
    pooling: str = "max"
    head_pooling: str = "global_average"

    # task: regression (pipeline.tasks.regression)
    loss: str = "mse"

    # model.builder (pipeline.builders): the search space's own entries, passed through to the user's function
    builder_values: tuple[tuple[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Every value by name, the builder's own ones beside the built-in ones: what is logged and stored."""
        values = {name: getattr(self, name) for name in DOMAINS}
        return {**values, **dict(self.builder_values)}

    def used(self, family: str, task: str) -> dict[str, Any]:
        """The values that shape this model, as a trial logs them; `from_dict` fills the rest with defaults,
        which shape nothing in it. A builder's own values (only a builder's sweep has them) always shape it."""
        return {**{name: getattr(self, name) for name in used_names(family, task)}, **dict(self.builder_values)}

    def replace(self, **changes: Any) -> "Hyperparameters":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Hyperparameters":
        """Rebuild from logged or stored values, coercing the types MLflow's string params lose; a name that is
        no built-in hyperparameter is a builder's own value, kept as it was stored."""
        passed = tuple(sorted((name, v) for name, v in values.items() if name not in DOMAINS))
        return cls(**{name: DOMAINS[name].coerce(v) for name, v in values.items() if name in DOMAINS},
                   builder_values=passed)


Fail = Callable[[str, str], Any]
_DEFAULTS = Hyperparameters()


@dataclass(frozen=True)
class Domain:
    """What one hyperparameter accepts: kind ('int', 'float', 'str') and its bounds or choices."""

    kind: str  # int, float, str or bool; plain: a builder's own value, any of them
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    choices: tuple = ()

    def coerce(self, value: Any) -> Any:
        if self.kind == "bool":  # MLflow params come back as 'True' / 'False'
            return value if isinstance(value, bool) else str(value).lower() == "true"
        return {"int": int, "float": float, "str": str}[self.kind](value)

    def validate(self, value: Any, key: str, fail: Fail) -> Any:
        if self.kind == "plain":
            finite = not isinstance(value, float) or math.isfinite(value)
            if not isinstance(value, (bool, int, float, str)) or not finite:
                fail(key, f"must be a number, a string or true/false, got {value!r}")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                fail(key, f"must be true or false, got {value!r}")
            return value
        if self.choices:
            if value not in self.choices:
                fail(key, f"{value!r} is not allowed; allowed: {', '.join(map(str, self.choices))}")
            return value
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (self.kind == "int" and not isinstance(value, int)):
            fail(key, f"must be {'an integer' if self.kind == 'int' else 'a number'}, got {value!r}")
        too_high = value >= self.high if self.high_open else value > self.high
        if math.isnan(value) or value < self.low or too_high:
            fail(key, f"{value} is out of range; allowed: {self.describe_range()}")
        return value

    def describe_range(self) -> str:
        return f"[{self.low}, {self.high}{')' if self.high_open else ']'}"


DOMAINS: dict[str, Domain] = {
    "units": Domain("int", low=1, high=8192),
    "hidden_layers": Domain("int", low=1, high=8),
    "dropout": Domain("float", low=0.0, high=1.0, high_open=True),
    "activation": Domain("str", choices=ACTIVATIONS),
    "optimizer": Domain("str", choices=OPTIMIZERS),
    "learning_rate": Domain("float", low=1e-7, high=10.0),
    "epochs": Domain("int", low=1, high=1000),
    "batch_size": Domain("int", low=1, high=65536),
    "preprocessing": Domain("str", choices=PREPROCESSING),
    "batch_norm": Domain("bool"),
    "weight_decay": Domain("float", low=0.0, high=1.0),
    "label_smoothing": Domain("float", low=0.0, high=1.0, high_open=True),
    "lr_schedule": Domain("str", choices=LR_SCHEDULES),
    "restore_best": Domain("bool"),
    "shift_pixels": Domain("int", low=0, high=8),
    "jit_compile": Domain("bool"),
    "conv_blocks": Domain("int", low=1, high=4),
    "filters": Domain("int", low=8, high=256),
    "double_filters": Domain("bool"),
    "kernel_size": Domain("int", choices=KERNEL_SIZES),
    "pooling": Domain("str", choices=POOLINGS),
    "head_pooling": Domain("str", choices=HEAD_POOLINGS),
    "loss": Domain("str", choices=LOSSES),
}
NAMES = tuple(DOMAINS)
# Hyperparameters that shape one family's network, or one task's training, only; the rest shape every model. A
# sweep of another family refuses them in its space, and a trial logs only the ones its model uses.
FAMILY_ONLY = {name: "cnn" for name in ("conv_blocks", "filters", "double_filters", "kernel_size", "pooling",
                                        "head_pooling")}
TASK_ONLY = {"loss": "regression", "label_smoothing": "classification"}  # smoothing softens class targets


def used_names(family: str, task: str) -> tuple[str, ...]:
    """The names that shape a model of this family and task; a user's builder (family "builder") is handed
    every value, so it may read any of them."""
    return tuple(name for name in NAMES if (family == "builder" or FAMILY_ONLY.get(name, family) == family)
                 and TASK_ONLY.get(name, task) == task)


@dataclass(frozen=True)
class IntParam:
    low: int
    high: int
    step: int = 1
    log: bool = False

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class FloatParam:
    low: float
    high: float
    step: float | None = None
    log: bool = False

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class CategoricalParam:
    choices: tuple

    def suggest(self, trial, name: str):
        return trial.suggest_categorical(name, list(self.choices))


@dataclass(frozen=True)
class FixedParam:
    value: Any


ParamSpec = Union[IntParam, FloatParam, CategoricalParam, FixedParam]


def base_values(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """The values every trial shares: the defaults, overridden by the space's fixed entries."""
    values = _DEFAULTS.as_dict()
    values.update({name: spec.value for name, spec in space.items() if isinstance(spec, FixedParam)})
    return values


def misfit(spec: ParamSpec, value: Any) -> str | None:
    """Why `value` is not one this search-space entry can give a trial (None when it is): what a configuration
    run as a first trial (study.start_with, study.warm_start) must satisfy."""
    if isinstance(spec, FixedParam):
        return None if _same(value, spec.value) else f"is not the fixed {spec.value!r}"
    if isinstance(spec, CategoricalParam):
        if any(_same(value, choice) for choice in spec.choices):
            return None
        return f"is not one of the choices {', '.join(map(str, spec.choices))}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number"
    if isinstance(spec, IntParam) and not isinstance(value, int):
        return "is not an integer"
    if not spec.low <= value <= spec.high:
        return f"is outside the range [{spec.low}, {spec.high}]"
    steps = (value - spec.low) / spec.step if spec.step else 0
    if not math.isclose(steps, round(steps), abs_tol=1e-9):
        return f"is not on the grid of step {spec.step} from {spec.low}"
    return None


def _same(value: Any, other: Any) -> bool:
    """Equal as Optuna compares choices, 0 and 0.0 alike, but true is no 1."""
    return value == other and isinstance(value, bool) == isinstance(other, bool)


def suggest_params(trial, space: Mapping[str, ParamSpec]) -> Hyperparameters:
    """Ask the sampler for each searched value, on top of the fixed ones: a complete set for the trial."""
    values = base_values(space)
    for name, spec in space.items():
        if not isinstance(spec, FixedParam):
            values[name] = spec.suggest(trial, name)
    return Hyperparameters.from_dict(values)


def parse_param(check, name: str, spec: Any) -> ParamSpec:
    """One `search_space` entry: a bare value is fixed; a mapping names its `type` and that type's keys.

    Checked against the hyperparameter's domain, so `search_space.dropout.high: 1.0` fails before a
    trial can draw it. `check` is a validation.Checker (errors name the file and the key).
    """
    key = f"search_space.{name}"
    domain = DOMAINS.get(name) or own_domain(spec)
    if not isinstance(spec, dict):
        return FixedParam(domain.validate(spec, key, check.fail))
    kind = check.choice(spec.get("type"), f"{key}.type", ("int", "float", "categorical", "fixed"))
    if kind == "fixed":
        check.keys(spec, key, ("type", "value"))
        return FixedParam(domain.validate(spec.get("value"), f"{key}.value", check.fail))
    if kind == "categorical":
        check.keys(spec, key, ("type", "choices"))
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            check.fail(f"{key}.choices", f"must be a non-empty list, got {check.quote(choices)}")
        return CategoricalParam(tuple(domain.validate(c, f"{key}.choices", check.fail) for c in choices))
    return _parse_range(check, key, domain, kind, spec)


def own_domain(spec: Any) -> Domain:
    """A builder's own entry (pipeline.builders) has no domain but the one its spec gives: an int or float range
    is bounded by its own low and high; a fixed value or a choice may be any number, string or boolean."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind in ("int", "float"):
        return Domain(kind, low=-math.inf, high=math.inf)
    return Domain("plain")


def _parse_range(check, key: str, domain: Domain, kind: str, spec: dict) -> ParamSpec:
    check.keys(spec, key, ("type", "low", "high", "step", "log"))
    if domain.kind != kind:
        allowed = "categorical, fixed" if domain.kind in ("str", "bool") else f"{domain.kind}, categorical, fixed"
        check.fail(f"{key}.type", f"'{kind}' does not fit this parameter; allowed: {allowed}")
    if domain.choices:
        check.fail(f"{key}.type", f"'{kind}' would draw every value between its bounds, but only "
                   f"{', '.join(map(str, domain.choices))} are allowed; allowed: categorical, fixed")
    convert = check.integer if kind == "int" else check.number
    low = domain.validate(convert(spec.get("low"), f"{key}.low"), f"{key}.low", check.fail)
    high = domain.validate(convert(spec.get("high"), f"{key}.high"), f"{key}.high", check.fail)
    if low > high:
        check.fail(key, f"low ({low}) must not be greater than high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        check.fail(f"{key}.log", f"must be true or false, got {check.quote(log)}")
    if log and low <= 0:
        check.fail(f"{key}.low", f"must be > 0 when log: true, got {low}")
    step = spec.get("step")
    if step is not None:
        step = convert(step, f"{key}.step")
        if not step > 0:
            check.fail(f"{key}.step", f"must be > 0, got {step}")
        if log:
            check.fail(f"{key}.step", "cannot be combined with log: true (Optuna allows one or the other)")
    if kind == "int":
        return IntParam(low, high, step or 1, log)
    return FloatParam(float(low), float(high), None if step is None else float(step), log)
