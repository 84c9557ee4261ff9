"""data.test_fraction and data.validation_fraction for `sweep init`, sized to the classes: a stratified split
needs every part to hold at least one example of each class (scikit-learn refuses a smaller part), so data with
many small classes gets larger test and validation parts than the defaults, and data too small for that is
refused naming its classes rather than by scikit-learn's arithmetic (once the loader has had its say: a
table without features is refused for that first, as `sweep run` refuses it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from pipeline.config import DataConfig
from pipeline.errors import DataError

MARGIN = 1.5  # a part sized for this many examples per class, so that rounding never leaves one short
CAPS = {"test_fraction": 0.5, "validation_fraction": 0.45}  # the config takes validation_fraction below 0.5


@dataclass(frozen=True)
class Sized:
    """The data settings, the notes on them, and, when no fractions can hold the classes, the refusal to raise
    should the loader refuse the split (its own message names the setting, not the classes)."""

    data: DataConfig
    notes: tuple[str, ...]
    refusal: DataError | None = None

    def refused(self, loader_error: DataError) -> DataError:
        """The refusal naming the classes when the loader refused the split this sizing could not fix; else the
        loader's own error (the data had another problem first)."""
        if self.refusal is not None and any(f"data.{key}" in str(loader_error) for key in CAPS):
            return self.refusal
        return loader_error


def sized_fractions(data: DataConfig, notes: list[str], counts: dict[str, int] | None, test_part: bool) -> Sized:
    """`data` with fractions large enough for the classes in `counts` (examples per class in the rows split
    first: all of them when `test_part` carves the test set out, else the training rows), and notes saying
    why a fraction was raised. None (a regression, a source not counted) keeps the defaults."""
    if not counts:
        return Sized(data, tuple(notes))
    rows, notes, chosen = sum(counts.values()), list(notes), {}
    for key in ("test_fraction", "validation_fraction") if test_part else ("validation_fraction",):
        fraction = _fraction(getattr(data, key), counts, rows, key)
        if not _fits(fraction, rows, len(counts)):
            return Sized(data, tuple(notes), _refusal(data, counts, key))
        if fraction != getattr(data, key):
            notes.append(f"data.{key} {fraction:g} (not {getattr(data, key):g}): {len(counts)} classes in the {rows} "
                         f"examples it divides, and the {key.split('_')[0]} part must hold each class at least once")
        chosen[key] = fraction
        rows -= math.ceil(fraction * rows)  # what the next split divides: the rows the test part left
    return Sized(dataclasses.replace(data, **chosen), tuple(notes))


def _fraction(default: float, counts: dict[str, int], rows: int, key: str) -> float:
    """The default, or enough for MARGIN examples of each class, rounded up to a hundredth; at most the cap."""
    return min(CAPS[key], max(default, math.ceil(100 * MARGIN * len(counts) / rows) / 100))


def _fits(fraction: float, rows: int, classes: int) -> bool:
    """Whether both parts of a stratified split (scikit-learn rounds the smaller part up) hold each class."""
    part = math.ceil(fraction * rows)
    return part >= classes and rows - part >= classes


def _refusal(data: DataConfig, counts: dict[str, int], key: str) -> DataError:
    smallest = min(counts, key=counts.get)
    return DataError(f"{data.data_dir or data.dataset}: {len(counts)} classes in {sum(counts.values())} examples "
                     f"(the smallest, {smallest!r}, has {counts[smallest]}): too few to split stratified by class, "
                     f"as each part needs an example of every class and data.{key} can be at most "
                     f"{CAPS[key]:g}; gather more examples of each class, or merge the small ones")
