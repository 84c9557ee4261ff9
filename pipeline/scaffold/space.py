"""The model family and the search space `sweep init` writes, sized to the data: a few thousand table rows
want small networks and many epochs, sixty thousand pictures wider ones and fewer; batches stay under a tenth
of the training rows so that every epoch takes several steps.
"""

from __future__ import annotations

from pipeline.data import Splits
from pipeline.scaffold.inspection import SMALL_TABLE

BATCHES = (2, 4, 8, 16, 32, 64, 128, 256, 512)


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


def search_space(splits: Splits, family: str) -> dict[str, tuple[object, str]]:
    """{hyperparameter: (its entry, a comment)}, sized to the data."""
    rows, regression = len(splits.y_train), splits.task == "regression"
    if family == "cnn":
        space = _cnn_space(rows)
    elif splits.inputs.image_shape is not None:
        space = _picture_space(rows)
    else:
        space = _vector_space(rows, regression, rows + len(splits.y_val) + len(splits.y_test) < SMALL_TABLE)
    if regression:
        space["loss"] = (_choice("mse", "huber"), "or mae; on the standardized label (huber's delta: 1 sd)")
        space["restore_best"] = (True, "end with the epoch of the best val_rmse")
    elif splits.inputs.image_shape is not None:
        space["label_smoothing"] = (_choice(0.0, 0.1), "softens the class targets; 0.1 often helps pictures")
    return space


def _batch_sizes(rows: int, preferred: tuple[int, ...]) -> list[int]:
    """The preferred batch sizes under a tenth of the training rows, else the largest three that are."""
    fitting = [b for b in BATCHES if b < rows / 10] or [1]
    return [b for b in preferred if b in fitting][-3:] or fitting[-3:]


def _vector_space(rows: int, regression: bool, small: bool) -> dict:
    units = (4, 32) if small and regression else (8, 64) if small else (16, 256)
    return {
        "units": (_span("int", *units, log=True), "width of each hidden layer"),
        "hidden_layers": (_span("int", 1, 2 if small else 3), "small data: few layers, or it memorizes the rows"),
        "dropout": (_span("float", 0.0, 0.3 if small else 0.5), "share of units dropped while training"),
        "activation": (_choice("relu", "elu", "tanh"), None),
        "learning_rate": (_span("float", 0.0005, 0.01 if small else 0.003, log=True), None),
        "weight_decay": (_span("float", 0.001, 0.1, log=True), "shrinks the weights: regularizes"),
        "optimizer": ("adamw", "decoupled weight decay"),
        "epochs": (_span("int", *(((30, 100) if regression else (20, 80)) if small else (10, 40))),
                   "few rows make an epoch short, so more of them" if small else None),
        "batch_size": (_choice(*_batch_sizes(rows, (4, 8, 16, 32) if small else (32, 64, 128))),
                       f"all under a tenth of the {rows} training rows"),
        "preprocessing": (_choice("standardize", "normalize"), "the numbers' scaling, fitted on train"),
    }


def _picture_space(rows: int) -> dict:
    return {
        "units": (_span("int", 64, 512, log=True), "width of each hidden layer"),
        "hidden_layers": (_span("int", 1, 3), None),
        "dropout": (_span("float", 0.1, 0.5), "share of units dropped while training"),
        "activation": (_choice("relu", "gelu", "silu"), None),
        "optimizer": (_choice("adam", "nadam", "adamw"), None),
        "learning_rate": (_span("float", 0.0003, 0.003, log=True), None),
        "epochs": (_span("int", 5, 30), None),
        "batch_size": (_choice(*_batch_sizes(rows, (64, 128, 256))), f"all under a tenth of the {rows} training "
                       "pictures"),
        "preprocessing": (_choice("standardize", "normalize"), "pixels scaled to [0, 1], or per pixel"),
        "lr_schedule": ("cosine", "the learning rate falls to 0 over the epochs"),
        "shift_pixels": (_choice(0, 1), "random 1-pixel shifts while training"),
    }


def _cnn_space(rows: int) -> dict:
    return {
        "conv_blocks": (_span("int", 2, 3), "Conv2D -> batch norm -> activation -> 2x2 pooling, each"),
        "filters": (_span("int", 16, 40, log=True), "the first block's; each next block doubles them"),
        "double_filters": (True, None),
        "kernel_size": (3, None),
        "pooling": ("max", None),
        "head_pooling": ("flatten", "flatten learns faster per epoch than global_average"),
        "batch_norm": (True, "a convolutional network trains faster with it"),
        "units": (_span("int", 64, 256, log=True), "the Dense head's width"),
        "hidden_layers": (1, None),
        "dropout": (_span("float", 0.2, 0.5), None),
        "optimizer": (_choice("adam", "adamw"), None),
        "learning_rate": (_span("float", 0.0007, 0.003, log=True), None),
        "epochs": (_span("int", 8, 14), None),
        "batch_size": (_choice(*_batch_sizes(rows, (64, 128, 256))), f"all under a tenth of the {rows} training "
                       "pictures"),
        "preprocessing": ("normalize", "pixels scaled to [0, 1]"),
        "lr_schedule": ("cosine", "the learning rate falls to 0 over the epochs"),
        "shift_pixels": (_choice(0, 1), "random 1-pixel shifts while training"),
    }


def _span(kind: str, low, high, log: bool = False) -> dict:
    return {"type": kind, "low": low, "high": high, **({"log": True} if log else {})}


def _choice(*values) -> dict:
    return {"type": "categorical", "choices": list(values)}
