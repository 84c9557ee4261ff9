"""A small residual MLP, an example of `model.builder` (sweeps/builder.yaml): `build(params, inputs, n_outputs)`
returns the output tensor, built from Keras' own layers only, so the model saves and serves like any other.

`params` holds the trial's values: the built-in ones (`dropout`, `activation`, ...) and the sweep file's own
entries, here `width` and `blocks`. `inputs` is the preprocessed tensor (an image as height x width x channels).
"""

import keras


def build(params: dict, inputs, n_outputs: int):
    """Flatten, widen to `width`, then `blocks` pre-norm residual blocks (LayerNorm -> Dense -> Dropout ->
    Dense, added back), then the class probabilities."""
    width, activation = params["width"], params["activation"]
    x = keras.layers.Flatten()(inputs) if len(inputs.shape) > 2 else inputs
    x = keras.layers.Dense(width, activation=activation)(x)
    for _ in range(params["blocks"]):
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.Dense(width * params["expansion"], activation=activation)(h)
        h = keras.layers.Dropout(params["dropout"])(h)
        h = keras.layers.Dense(width)(h)
        x = keras.layers.Add()([x, h])
    x = keras.layers.LayerNormalization()(x)
    return keras.layers.Dense(n_outputs, activation="softmax")(x)
