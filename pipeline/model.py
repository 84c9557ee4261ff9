"""The model builder: plain hyperparameters in, a compiled Keras model out. Knows nothing of Optuna.

Architecture: raw input (the data's shape and dtype: uint8 images as they are; a table's columns, one named
input each) -> [random shifts, training only] -> [a table's gaps filled, when its study imputes them] ->
flatten -> preprocessing layers (fitted on the training split) -> the family's network (pipeline.families,
`model.family`: dense, cnn) -> the task's output layer (pipeline.tasks, `task`: classification's softmax).
A user's builder (`model.builder`) makes everything between the preprocessing and the task's last step.
With the defaults on Fashion-MNIST this is the reference tutorial's model, with its /255 inside. The same
model is trained, logged, exported and served: every layer is a built-in one, and the augmentation is inert
at inference.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from pipeline.data.records import InputSpec
from pipeline.families import FAMILIES
from pipeline.hyperparameters import Hyperparameters
from pipeline.preprocessing import FeatureStats, category_layer, filled_gaps, preprocessing_layers
from pipeline.tasks import TASKS

# The names a table model's layers and Keras' automatically named operations (the gap filling's isnan,
# equal, where, numbered in a process that builds many models) take; an input must not.
_RESERVED_NAMES = re.compile(r"numbers|features|normalize|standardize|probabilities|"
                             r"(dense|dropout|batch_norm|activation)_\d+|(column|filled|onehot)_.*|"
                             r"(isnan|equal|where|identity)(_\d+)?")


@dataclass(frozen=True)
class Design:
    """What the sweep file says the model is: its family's network, or the user's builder (`build`, loaded
    where the user asked for it: pipeline.builders), and its task."""

    family: str = "dense"
    task: str = "classification"
    build: Callable | None = None


def build_model(params: Hyperparameters, inputs: InputSpec, n_outputs: int, stats: FeatureStats,
                design: Design = Design()) -> keras.Model:
    if inputs.is_table:
        feeds, features = _table_features(params, inputs, stats)
    else:
        feeds, features = _array_features(params, inputs, stats)
    task = TASKS[design.task]
    if design.build is not None:
        outputs = task.finish(design.build(params, features, inputs, n_outputs), stats)
    else:
        outputs = task.head(FAMILIES[design.family].body(params, features, inputs), n_outputs, stats)
    model = keras.Model(feeds, outputs, name=task.MODEL_NAME)
    model.compile(optimizer=build_optimizer(params.optimizer, params.learning_rate, params.weight_decay),
                  jit_compile=params.jit_compile, **task.compile_args(params))
    return model


def _array_features(params: Hyperparameters, inputs: InputSpec, stats: FeatureStats):
    """Images or feature vectors: shifted (images, training only), flattened, preprocessed."""
    feed = keras.Input(shape=inputs.shape, dtype=inputs.dtype, name="inputs")
    features = feed
    for layer in [*_shifts(params.shift_pixels, inputs.shape),
                  keras.layers.Reshape((math.prod(inputs.shape),), name="flatten"),
                  *preprocessing_layers(params.preprocessing, stats, inputs.dtype)]:
        features = layer(features)
    return feed, features


def _table_features(params: Hyperparameters, inputs: InputSpec, stats: FeatureStats):
    """One input per column, keyed by the column's name: gaps filled where the study imputed them, numbers
    scaled together, each text column one-hot (layers `filled_` and `onehot_` + the input's name)."""
    layer_names = _layer_names(inputs.columns)
    feeds = {name: keras.Input(shape=(1,), dtype="string" if kind == "text" else "float32", name=layer_names[name])
             for name, kind in inputs.columns}
    values = {name: filled_gaps(feed, stats.fills[name], f"filled_{layer_names[name]}") if stats.fills else feed
              for name, feed in feeds.items()}
    parts = [category_layer(stats.categories[name], f"onehot_{layer_names[name]}")(values[name])
             for name, kind in inputs.columns if kind == "text"]
    numbers = [values[name] for name, kind in inputs.columns if kind == "number"]
    if numbers:
        joined = keras.layers.Concatenate(name="numbers")(numbers) if len(numbers) > 1 else numbers[0]
        for layer in preprocessing_layers(params.preprocessing, stats, "float32"):
            joined = layer(joined)
        parts.insert(0, joined)
    return feeds, keras.layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]


def model_inputs(x: np.ndarray):
    """What the model is fed for inputs x: the array itself, or (a table) one (N, 1) column per named input,
    text as TensorFlow strings (Keras' NumPy adapter takes no text arrays)."""
    if x.dtype.names is None:
        return x
    import tensorflow as tf

    return {name: tf.constant(x[name].reshape(-1, 1)) if x.dtype[name].kind == "U" else x[name].reshape(-1, 1)
            for name in x.dtype.names}


def build_optimizer(name: str, learning_rate: float, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """Resolve the optimizer by its Keras name, with the trial's learning rate and (above 0) decoupled
    weight decay, which every Keras 3 optimizer takes."""
    config = {"learning_rate": learning_rate, **({"weight_decay": weight_decay} if weight_decay else {})}
    return keras.optimizers.get({"class_name": name, "config": config})


def _shifts(pixels: int, shape: tuple[int, ...]) -> list:
    """Random shifts of up to `pixels` in each direction, filled with 0 (the background of dark-ground
    images), on the raw image before it is flattened; Keras applies them in training only."""
    if not pixels:
        return []
    if len(shape) not in (2, 3):
        raise ValueError(f"shift_pixels needs image inputs (height x width [x channels]); these are {shape}")
    height, width = shape[:2]
    image = (height, width, shape[2] if len(shape) == 3 else 1)
    return [keras.layers.Reshape(image, name="image"),
            keras.layers.RandomTranslation(pixels / height, pixels / width, fill_mode="constant",
                                           interpolation="nearest", name="shift")]


def _layer_names(columns: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Each column's name as a unique Keras layer name that TensorFlow's SavedModel signatures also take
    (letters, digits, _ . -); the input dict keeps the column's own name. A name the model's other layers
    and operations may take (`numbers`, `dense_0`, `where_3`, ...) gets the prefix `column_`, which they
    never have, so that no column can clash with them."""
    names: dict[str, str] = {}
    for column, _ in columns:
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", column).lstrip("._-") or "column"
        base = f"column_{base}" if _RESERVED_NAMES.fullmatch(base) else base
        name, count = base, 1
        while name in names.values():
            count += 1
            name = f"{base}.{count}"  # not _{count}: `dense` twice must not become `dense_2`, a layer's name
        names[column] = name
    return names
