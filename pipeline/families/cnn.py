"""The cnn family: the preprocessed pixels back in their image shape, `conv_blocks` x [Conv2D -> (batch norm) ->
activation -> 2x2 pooling], global average pooling or flatten, then the dense family's Dense head. Every layer
is a built-in one, so the model loads with safe_mode=True like the dense family's."""

from __future__ import annotations

import keras

from pipeline.data.records import InputSpec
from pipeline.families.dense import dense_stack
from pipeline.hyperparameters import Hyperparameters

POOLING_LAYERS = {"max": keras.layers.MaxPooling2D, "average": keras.layers.AveragePooling2D}
HEAD_LAYERS = {"global_average": keras.layers.GlobalAveragePooling2D, "flatten": keras.layers.Flatten}


def body(params: Hyperparameters, features, inputs: InputSpec):
    """The preprocessing layers work on the flat vector (their statistics are per pixel); the convolutions
    need the image back."""
    maps = keras.layers.Reshape(inputs.image_shape, name="pixels")(features)
    for index in range(params.conv_blocks):
        maps = _conv_block(params, maps, index)
    maps = HEAD_LAYERS[params.head_pooling](name="head_pooling")(maps)
    return dense_stack(params, maps)


def refusal(inputs: InputSpec) -> str | None:
    if inputs.image_shape is None:
        kind = "a table's columns" if inputs.is_table else f"vectors of {inputs.shape[0]} features"
        return (f"'cnn' convolves over images (height x width [x channels]); this data is {kind}, with no pixel "
                "grid (use model.family dense)")
    return None


def _conv_block(params: Hyperparameters, maps, index: int):
    """Conv2D -> (batch norm) -> activation -> 2x2 pooling; pooling is skipped once the map is too small to
    halve, so that four blocks still fit a small image."""
    filters = params.filters * 2 ** index if params.double_filters else params.filters
    maps = keras.layers.Conv2D(filters, params.kernel_size, padding="same", use_bias=not params.batch_norm,
                               activation=None if params.batch_norm else params.activation,
                               name=f"conv_{index}")(maps)
    if params.batch_norm:
        maps = keras.layers.BatchNormalization(name=f"conv_batch_norm_{index}")(maps)
        maps = keras.layers.Activation(params.activation, name=f"conv_activation_{index}")(maps)
    height, width = maps.shape[1:3]
    if min(height, width) >= 2:
        maps = POOLING_LAYERS[params.pooling](2, name=f"pooling_{index}")(maps)
    return maps
