"""Search-space entries of a sweep file: typed ranges, choices and fixed values, checked against each
hyperparameter's domain (so `search_space.dropout.high: 1.0` fails before a trial can draw it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from pipeline.hyperparameters import HYPERPARAMETERS
from pipeline.validation import Checker


@dataclass(frozen=True)
class IntParam:
    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class FloatParam:
    low: float
    high: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True)
class CategoricalParam:
    choices: tuple


@dataclass(frozen=True)
class FixedParam:
    value: Any


ParamSpec = Union[IntParam, FloatParam, CategoricalParam, FixedParam]


def parse_param(check: Checker, name: str, spec: Any) -> ParamSpec:
    """One `search_space` entry: a bare value is fixed; a mapping names its `type` and that type's keys."""
    key = f"search_space.{name}"
    hp = HYPERPARAMETERS[name]
    if not isinstance(spec, dict):
        return FixedParam(hp.validate(spec, key, check.fail))
    kind = check.choice(spec.get("type"), f"{key}.type", ("int", "float", "categorical", "fixed"))
    if kind == "fixed":
        check.keys(spec, key, ("type", "value"))
        return FixedParam(hp.validate(spec.get("value"), f"{key}.value", check.fail))
    if kind == "categorical":
        check.keys(spec, key, ("type", "choices"))
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            check.fail(f"{key}.choices", f"must be a non-empty list, got {choices!r}")
        return CategoricalParam(tuple(hp.validate(c, f"{key}.choices", check.fail) for c in choices))
    return _parse_range(check, key, hp, kind, spec)


def _parse_range(check: Checker, key: str, hp, kind: str, spec: dict) -> ParamSpec:
    check.keys(spec, key, ("type", "low", "high", "step", "log"))
    if hp.kind != kind:
        allowed = "categorical, fixed" if hp.kind == "str" else f"{hp.kind}, categorical, fixed"
        check.fail(f"{key}.type", f"'{kind}' does not fit this parameter; allowed: {allowed}")
    convert = check.integer if kind == "int" else check.number
    low = hp.validate(convert(spec.get("low"), f"{key}.low"), f"{key}.low", check.fail)
    high = hp.validate(convert(spec.get("high"), f"{key}.high"), f"{key}.high", check.fail)
    if low > high:
        check.fail(key, f"low ({low}) must not be greater than high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        check.fail(f"{key}.log", f"must be true or false, got {log!r}")
    if log and low <= 0:
        check.fail(f"{key}.low", f"must be > 0 when log: true, got {low}")
    step = spec.get("step")
    if step is not None:
        step = convert(step, f"{key}.step")
        if step <= 0:
            check.fail(f"{key}.step", f"must be > 0, got {step}")
        if log:
            check.fail(f"{key}.step", "cannot be combined with log: true (Optuna allows one or the other)")
    if kind == "int":
        return IntParam(low, high, step or 1, log)
    return FloatParam(float(low), float(high), None if step is None else float(step), log)
