"""The three-way split: a stratified, seeded validation part carved from train; the test part only reported.

Data that cannot be split that way (an empty test set, a class with one image or row, a test class
training never saw) is refused, naming the class, before anything is written or trained. A regression's
numbers have no classes: its splits and subsets are seeded shuffles, and a constant label is refused.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.data.records import RawData, Splits
from pipeline.errors import DataError


def split_data(raw: RawData, validation_fraction: float, seed: int,
               subset: int | None = None, test_subset: int | None = None) -> Splits:
    """Carve a validation set (stratified for classes) out of train, after optionally shrinking both sets."""
    regression = raw.task == "regression"
    (_check_numbers_splittable if regression else _check_splittable)(raw)
    x, y = _stratified_subset(raw.x_train, raw.y_train, subset, seed, raw.source, "data.subset", regression)
    x_test, y_test = _stratified_subset(raw.x_test, raw.y_test, test_subset, seed, raw.source, "data.test_subset",
                                        regression)
    x_train, x_val, y_train, y_val = stratified_split(x, y, validation_fraction, seed, raw.source,
                                                      "data.validation_fraction", by_class=not regression)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, raw.class_names, raw.source, task=raw.task)


def stratified_split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int, source: str, setting: str,
                     by_class: bool = True):
    """x_a, x_b, y_a, y_b with `fraction` of each class in the b part (`by_class` False, a regression's
    numbers: of the rows, shuffled); scikit-learn's refusal as one line."""
    try:
        return train_test_split(x, y, test_size=fraction, stratify=y if by_class else None, random_state=seed)
    except ValueError as exc:  # scikit-learn's word on a split too small for the classes
        raise DataError(f"{source}: cannot split {len(y)} inputs stratified by class ({setting} {fraction}): "
                        f"{_shortened(str(exc))}") from None


def _check_numbers_splittable(raw: RawData) -> None:
    """A regression needs test rows, and training labels that vary: a constant has no spread to learn (and to
    standardize by)."""
    if len(raw.y_test) == 0:
        raise DataError(f"{raw.source}: the test set is empty; the test set is what the chosen model is scored on")
    if len(np.unique(raw.y_train)) < 2:
        found = f"only {raw.y_train[0]:g}" if len(raw.y_train) else "none"
        raise DataError(f"{raw.source}: task regression needs training labels that vary; found {found}")


def _check_splittable(raw: RawData) -> None:
    """Every class needs two training inputs (one may go to validation), and a test input needs a class
    the model was trained on."""
    if len(raw.y_test) == 0:
        raise DataError(f"{raw.source}: the test set is empty; the test set is what the chosen model is scored on")
    present = np.unique(raw.y_train)
    if len(present) < 2:
        found = f"only {raw.class_names[present[0]]!r}" if len(present) else "none"
        raise DataError(f"{raw.source}: a classifier needs at least two classes; found {found}")
    counts = np.bincount(raw.y_train, minlength=len(raw.class_names))
    inputs = "rows" if raw.x_train.dtype.names else "images"
    for label, count in enumerate(counts):
        if count == 0 and label in raw.y_test:
            raise DataError(f"{raw.source}: class {label} ({raw.class_names[label]!r}) appears only in the "
                            f"test {inputs}: training never saw it, so the model cannot predict it; add training "
                            f"{inputs} of it, or remove it from the test set")
        if count == 1:
            raise DataError(f"{raw.source}: class {label} ({raw.class_names[label]!r}) has 1 training "
                            f"{inputs[:-1]}; a stratified train/validation split needs at least 2 of each class")


def _shortened(message: str, limit: int = 300) -> str:
    """scikit-learn's message without its list of every class (1 kB for a label of 200 values)."""
    message = message.split(" Classes with too few members are:")[0]
    return message if len(message) <= limit else message[:limit] + "..."


def _stratified_subset(x: np.ndarray, y: np.ndarray, size: int | None, seed: int, source: str, setting: str,
                       regression: bool = False):
    if size is None or size >= len(y):
        return x, y
    try:
        x_small, _, y_small, _ = train_test_split(x, y, train_size=size, stratify=None if regression else y,
                                                  random_state=seed)
    except ValueError as exc:
        raise DataError(f"{source}: cannot take a stratified subset of {size} from {len(y)} inputs ({setting}): "
                        f"{exc}") from None
    return x_small, y_small
