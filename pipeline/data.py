"""Fashion-MNIST from one of three sources, and the stratified train/validation split.

Sources: a folder of the four IDX `.gz` files (Keras' layout), a folder of the Kaggle CSVs, or Keras'
own loader (its cache under ~/.keras/datasets, downloading when missing). The test set is kept apart:
it is only ever reported, never used to choose.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.errors import DataError

if TYPE_CHECKING:
    from pipeline.config import DataConfig

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
CSV_FILES = {"train": "fashion-mnist_train.csv", "test": "fashion-mnist_test.csv"}
_IDX_MAGIC = {3: 0x0803, 1: 0x0801}  # unsigned-byte images (3 dims) and labels (1 dim)


@dataclass(frozen=True)
class RawData:
    """The dataset as published: uint8 28x28 images and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    class_names: tuple[str, ...] = CLASS_NAMES

    def digest(self) -> str:
        return array_digest(self.x_train, self.y_train, self.x_test, self.y_test)


@dataclass(frozen=True)
class Splits:
    """Raw uint8 images split three ways; train fits, validation chooses, test is only reported.

    The model takes these arrays as they are: its preprocessing is part of the network.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def train_digest(self) -> str:
        return array_digest(self.x_train, self.y_train)

    def with_validation_in_train(self) -> "Splits":
        """Train and validation together (a refit); the test set stays apart."""
        return dataclasses.replace(
            self, x_train=np.concatenate([self.x_train, self.x_val]),
            y_train=np.concatenate([self.y_train, self.y_val]), x_val=self.x_val[:0], y_val=self.y_val[:0])


def array_digest(*arrays: np.ndarray) -> str:
    """A short content hash, so a run records exactly which data it saw."""
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()[:16]


def load_fashion_mnist(data_dir: str | Path | None = None) -> RawData:
    """Read from data_dir (IDX or CSV files) when given, else through Keras' cached loader."""
    if data_dir is None:
        return _load_with_keras()
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found. {_HOW_TO_SUPPLY}")
    if all(_idx_path(folder, name) for name in IDX_FILES.values()):
        arrays = {key: read_idx(_idx_path(folder, name)) for key, name in IDX_FILES.items()}
        return _checked(RawData(**arrays, source=str(folder.resolve())))
    if all((folder / name).is_file() for name in CSV_FILES.values()):
        x_train, y_train = read_kaggle_csv(folder / CSV_FILES["train"])
        x_test, y_test = read_kaggle_csv(folder / CSV_FILES["test"])
        return _checked(RawData(x_train, y_train, x_test, y_test, source=str(folder.resolve())))
    expected = ", ".join(f"{n}.gz" for n in IDX_FILES.values())
    raise DataError(f"{folder}: holds neither the IDX files ({expected}) nor the Kaggle CSVs "
                    f"({', '.join(CSV_FILES.values())}). {_HOW_TO_SUPPLY}")


def split_data(raw: RawData, validation_fraction: float, seed: int,
               subset: int | None = None, test_subset: int | None = None) -> Splits:
    """Carve a stratified validation set out of train, after optionally shrinking both sets.

    Refuses, naming the class, data that cannot be split that way: before anything is written or trained.
    """
    _check_splittable(raw)
    try:
        x, y = _stratified_subset(raw.x_train, raw.y_train, subset, seed)
        x_test, y_test = _stratified_subset(raw.x_test, raw.y_test, test_subset, seed)
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=validation_fraction, stratify=y, random_state=seed)
    except ValueError as exc:  # scikit-learn's word on a split too small for the classes
        raise DataError(f"{raw.source}: cannot split {len(raw.y_train)} training images stratified by class "
                        f"(data.subset {subset}, data.validation_fraction {validation_fraction}): {exc}") from None
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, raw.class_names, raw.source)


def _check_splittable(raw: RawData) -> None:
    """Every class needs two training images (one may go to validation) and a test image needs a class
    the model was trained on."""
    if len(raw.y_test) == 0:
        raise DataError(f"{raw.source}: the test set is empty; the test set is what the chosen model is scored on")
    counts = np.bincount(raw.y_train, minlength=len(raw.class_names))
    for label, count in enumerate(counts):
        if count < 2 and (count or label in raw.y_test):
            raise DataError(f"{raw.source}: class {label} ({raw.class_names[label]!r}) has {count} training "
                            "image(s); a stratified train/validation split needs at least 2 of each class")


def read_kaggle_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Kaggle's layout: a header, then `label,pixel1..pixel784` per row."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read CSV: {exc}") from None
    if frame.empty:
        raise DataError(f"{path}: has no rows (only a header, or nothing)")
    if frame.shape[1] != 785:
        raise DataError(f"{path}: expected 785 columns (label, pixel1..pixel784), found {frame.shape[1]}")
    values = frame.to_numpy()
    if values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 255:
        raise DataError(f"{path}: expected integer labels and pixels in 0..255")
    return values[:, 1:].astype(np.uint8).reshape(-1, 28, 28), values[:, 0].astype(np.uint8)


_HOW_TO_SUPPLY = (
    "Supply the data in one of three ways: (1) --data-dir DIR (or data.data_dir in the sweep file) "
    "pointing at a folder with the four Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, ...); "
    "(2) the same folder holding Kaggle's fashion-mnist_train.csv and fashion-mnist_test.csv; "
    "(3) copy the four IDX .gz files into ~/.keras/datasets/fashion-mnist/ so Keras' loader finds them "
    "without downloading."
)


def _load_with_keras() -> RawData:
    from keras.datasets import fashion_mnist

    try:
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    except Exception as exc:  # Keras raises a bare Exception on a failed download
        raise DataError(f"Keras could not load Fashion-MNIST (download failed or cache damaged: {exc}). "
                        f"{_HOW_TO_SUPPLY}") from None
    return _checked(RawData(x_train, y_train, x_test, y_test, source="keras.datasets.fashion_mnist"))


def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed or not) of unsigned bytes, checked against its own header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc}); the file is damaged, fetch it again") from None
    if len(data) < 8:
        raise DataError(f"{path}: too short to be an IDX file")
    magic = int.from_bytes(data[:4], "big")
    dims = magic & 0xFF
    if _IDX_MAGIC.get(dims) != magic:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic number {magic:#x})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    offset = 4 + 4 * dims
    if len(data) - offset != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but the file holds {len(data) - offset} bytes; damaged")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _checked(raw: RawData) -> RawData:
    for name in ("x_train", "x_test"):
        images, labels = getattr(raw, name), getattr(raw, name.replace("x_", "y_"))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise DataError(f"{raw.source}: {name} has shape {images.shape} for {len(labels)} labels; "
                            "expected N x 28 x 28 images with one label each")
        if labels.max(initial=0) >= len(CLASS_NAMES):
            raise DataError(f"{raw.source}: labels must be 0..9, found {labels.max()}")
    return raw


def _stratified_subset(x: np.ndarray, y: np.ndarray, size: int | None, seed: int):
    if size is None or size >= len(y):
        return x, y
    x_small, _, y_small, _ = train_test_split(x, y, train_size=size, stratify=y, random_state=seed)
    return x_small, y_small


def portable_folder(data_dir: str | None, base: Path) -> str | None:
    """A data folder as a store records it: relative to `base` (the sweep file's folder) when inside it,
    so a store shared with colleagues does not spread one person's home paths; None for Keras' loader."""
    if data_dir is None:
        return None
    folder = Path(data_dir).expanduser().resolve()
    try:
        return str(folder.relative_to(base.resolve()))
    except ValueError:
        return str(folder)


def describe_folder(data_dir: str | None) -> str:
    return "Keras' own copy of the dataset" if data_dir is None else f"the data in {data_dir}"


def located_folder(recorded: str | None, base: Path) -> str | None:
    """The inverse of portable_folder: a recorded folder, found again from the sweep file's folder."""
    if recorded is None or Path(recorded).is_absolute():
        return recorded
    return str(base / recorded)


def load_splits(data: "DataConfig", seed: int) -> Splits:
    """The sweep's data and its train/validation/test split: the same for every process and command."""
    raw = load_fashion_mnist(data.data_dir)
    return split_data(raw, data.validation_fraction, seed, data.subset, data.test_subset)
