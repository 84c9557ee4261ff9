"""A user's own network (`model.builder: models/my_net.py:build`): its file loaded, its function called with a
trial's values, checked once before a sweep writes anything, and fingerprinted for the study.

The user's code runs only where the user asked for it: in the worker that trains (whose start-time check
builds the first values of the space, before the worker says Ready) and in an export's refit. The function
takes a plain dict of the trial's values (built-in and its own), the preprocessed Keras tensor (shaped as
the image, for images) and the number of outputs, and returns the output tensor; the task finishes it.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import keras
import numpy as np

from pipeline.config import SweepConfig
from pipeline.data import Splits
from pipeline.errors import BadInputError
from pipeline.hyperparameters import CategoricalParam, FixedParam, Hyperparameters, ParamSpec
from pipeline.model import Design, build_model, model_inputs
from pipeline.preprocessing import FeatureStats

PROBABILITY_ROWS = 8  # training inputs whose outputs must sum to 1, for a classification builder
PROBABILITY_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; a missing softmax misses by far more


def design(config: SweepConfig, recorded: dict | None = None) -> Design:
    """The sweep file's design; with a builder, its function loaded from its file (this runs the user's code),
    refused when it is no longer the one a study `recorded` (pipeline.keys.BUILDER)."""
    if config.model.builder is None:
        return Design(config.model.family, config.task)
    now = record(config) if config.builder_path.is_file() else None
    if recorded and now and now["digest"] != recorded["digest"]:
        raise BadInputError(f"{_where(config)}: changed since the study started (digest {recorded['digest'][:12]}, now "
                            f"{now['digest'][:12]}), so it would build another network than the study's; restore it")
    return Design(config.model.family, config.task, _adapter(load(config), _where(config)))


def record(config: SweepConfig) -> dict | None:
    """What the study keeps of the builder (pipeline.keys.BUILDER): its file as the sweep file names it and where
    it is (for commands given --study NAME), its function and its digest."""
    if config.model.builder is None:
        return None
    return {"file": config.model.builder_file, "path": str(config.builder_path.resolve()),
            "function": config.model.builder_function,
            "digest": hashlib.sha256(config.builder_path.read_bytes()).hexdigest()}


def load(config: SweepConfig) -> Callable:
    """The user's function, from its file loaded as a module of its own (named after the file, and out of
    sys.modules again once loaded, so two builders of one name never meet)."""
    path, where = config.builder_path, _where(config)
    if not path.is_file():
        raise BadInputError(f"{where}: no such file ({path.resolve()}); model.builder names a Python file relative "
                            "to the sweep file's folder, and the function in it")
    name = "sweep_builder_" + re.sub(r"\W", "_", path.stem)
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    sys.modules[name] = module  # while it runs: dataclasses and typing look their module up by name
    try:
        loader.exec_module(module)
    except Exception as exc:
        raise BadInputError(f"{where}: the file cannot be loaded: {_first_line(exc)}") from None
    finally:
        sys.modules.pop(name, None)
    function = getattr(module, config.model.builder_function, None)
    if not callable(function):
        found = "is not a function" if function is not None else "is not defined in the file"
        functions = sorted(n for n, v in vars(module).items() if callable(v) and getattr(v, "__module__", "") == name)
        raise BadInputError(f"{where}: {config.model.builder_function!r} {found}; the file's functions: "
                            f"{', '.join(functions) or 'none'}")
    return function


def _adapter(function: Callable, where: str) -> Callable:
    """Design.build: the user's function called with plain values and the preprocessed tensor (images shaped
    back to height x width x channels, so a Conv2D takes them), its output checked for its shape. The user's
    layers make a model of their own inside the pipeline's, so their names (Keras' automatic `flatten`, say)
    never clash with the pipeline's layers."""
    def build(params: Hyperparameters, features, inputs, n_outputs: int):
        feed = keras.Input(shape=inputs.image_shape or tuple(features.shape[1:]), name="builder_inputs")
        outputs = function(params.as_dict(), feed, n_outputs)
        shape = getattr(outputs, "shape", None)
        if shape is None or tuple(shape) != (None, n_outputs):
            got = f"a tensor of shape {tuple(shape)}" if shape is not None else f"a {type(outputs).__name__}"
            raise BadInputError(f"{where}: returned {got}; expected the output tensor of shape (None, {n_outputs}), "
                                f"one value per output ({n_outputs} for this data)")
        shaped = features if inputs.image_shape is None else keras.layers.Reshape(
            inputs.image_shape, name="builder_image")(features)
        return keras.Model(feed, outputs, name="builder")(shaped)
    return build


def check(config: SweepConfig, built: Design, data: Splits, stats: FeatureStats) -> None:
    """Before the worker says Ready: the builder builds on the first values of its space, into the output the
    task needs, and into a model that loads with safe_mode=True (built-in layers only)."""
    where, first = _where(config), first_values(config.search_space)
    params = Hyperparameters.from_dict(first)
    try:
        model = build_model(params, data.inputs, len(data.class_names), stats, built)
    except BadInputError:
        raise
    except Exception as exc:
        shown = ", ".join(f"{name}={value!r}" for name, value in first.items() if name in config.search_space)
        raise BadInputError(f"{where}: raised {_first_line(exc)} on the first values of the search space "
                            f"({shown or 'the defaults'})") from None
    if config.task == "classification":
        _check_probabilities(model, data, where)
    else:
        _check_linear(model, where)
    _check_safe(model, where)


def first_values(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """The defaults with the space's first values: fixed values, the lowest of ranges, the first choice."""
    values = Hyperparameters().as_dict()
    for name, spec in space.items():
        if isinstance(spec, FixedParam):
            values[name] = spec.value
        elif isinstance(spec, CategoricalParam):
            values[name] = spec.choices[0]
        else:
            values[name] = spec.low
    return values


def _check_probabilities(model: keras.Model, data: Splits, where: str) -> None:
    """A classifier's outputs are the class probabilities: non-negative rows that sum to 1."""
    outputs = np.asarray(model.predict(model_inputs(data.x_train[:PROBABILITY_ROWS]), verbose=0), np.float64)
    sums = outputs.sum(axis=1)
    if (outputs < 0).any() or not np.allclose(sums, 1.0, atol=PROBABILITY_TOLERANCE):
        raise BadInputError(f"{where}: its outputs are not class probabilities (on {len(sums)} training inputs the "
                            f"rows sum to {sums.min():.3g}..{sums.max():.3g}, not 1); end it with a softmax, e.g. "
                            "keras.layers.Dense(n_outputs, activation='softmax')")


def _check_linear(model: keras.Model, where: str) -> None:
    """A regression's value comes out as it is (the task maps it to the label's units): a softmax over one
    output is 1 for every input, so such a model could never learn."""
    last = model.get_layer("builder").layers[-1]
    if getattr(getattr(last, "activation", None), "__name__", "") == "softmax":
        raise BadInputError(f"{where}: its last layer {last.name!r} ends in a softmax, which over one value is 1 for "
                            "every input; a regression's builder returns its value linear, e.g. "
                            "keras.layers.Dense(n_outputs)")


def _check_safe(model: keras.Model, where: str) -> None:
    """Every layer built in to Keras and none a Lambda (whose code safe_mode refuses to load); proven by saving
    the model and loading it back with safe_mode=True, as MLflow and `sweep predict` will."""
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Lambda) or not type(layer).__module__.startswith("keras."):
            kind = ("a Lambda layer" if isinstance(layer, keras.layers.Lambda)
                    else f"of a custom layer class ({type(layer).__qualname__})")
            raise BadInputError(f"{where}: layer {layer.name!r} is {kind}, whose code a saved model cannot carry "
                                "safely (keras.saving.load_model(..., safe_mode=True) refuses it); build the network "
                                "from Keras' built-in layers")
    with tempfile.TemporaryDirectory(prefix="sweep-builder-") as folder:
        path = Path(folder) / "model.keras"
        try:
            model.save(path)
            with warnings.catch_warnings():  # the optimizer's variables, not yet built: beside the point here
                warnings.simplefilter("ignore", UserWarning)
                keras.saving.load_model(path, safe_mode=True)
        except Exception as exc:
            raise BadInputError(f"{where}: the model cannot be saved and loaded with safe_mode=True: "
                                f"{_first_line(exc)}") from None


def _layers(layer) -> list:
    """Every layer inside a model, nested models' layers too."""
    found = []
    for inner in getattr(layer, "layers", []):
        found += [inner, *_layers(inner)]
    return found


def _where(config: SweepConfig) -> str:
    return f"{config.path}: model.builder {config.model.builder_file}:{config.model.builder_function}"


def _first_line(exc: Exception) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")
