"""IDX files (the MNIST family's format, any image shape) and Kaggle's CSV layout of the same data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from pipeline.data.records import RawData, checked, numbered_classes
from pipeline.errors import DataError

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
_UNSIGNED_BYTE = 0x08  # the IDX type code; the last byte of the magic number is the number of dimensions


def holds_idx(folder: Path) -> bool:
    return all(_idx_path(folder, name) for name in IDX_FILES.values())


def load_idx_folder(folder: Path, class_names: tuple[str, ...] | None = None) -> RawData:
    """The four IDX files (gzipped or not) of a folder; images of any shape, labels 0..K-1."""
    if not holds_idx(folder):
        expected = ", ".join(f"{name}.gz" for name in IDX_FILES.values())
        raise DataError(f"{folder}: does not hold the four IDX files ({expected})")
    arrays = {key: read_idx(_idx_path(folder, name)) for key, name in IDX_FILES.items()}
    names = class_names or numbered_classes(arrays["y_train"], arrays["y_test"])
    return checked(RawData(**arrays, source=str(folder.resolve()), class_names=names))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes, checked against its own header."""
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
    if magic >> 8 != _UNSIGNED_BYTE or not 1 <= dims <= 4:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic number {magic:#x})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    offset = 4 + 4 * dims
    if len(data) - offset != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but the file holds {len(data) - offset} bytes; damaged")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def read_pixel_csv(path: Path, shape: tuple[int, ...], labelled: bool | None = None,
                   pixels: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Kaggle's layout: a header, then `label,pixel1..pixelN` per row (the label column may be absent
    when `labelled` is not True). Returns the images and the labels (empty without a label column).
    With `pixels` False (a features model's rows) the values may be any numbers, returned as read."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read CSV: {exc}") from None
    if frame.empty:
        raise DataError(f"{path}: has no rows (only a header, or nothing)")
    count = int(np.prod(shape))
    allowed = [count + 1] if labelled else [count, count + 1]
    if frame.shape[1] not in allowed:
        raise DataError(f"{path}: expected {' or '.join(map(str, allowed))} columns (label, pixel1..pixel{count}), "
                        f"found {frame.shape[1]}")
    values = frame.to_numpy()
    if not pixels and values.dtype.kind not in "iuf":
        raise DataError(f"{path}: expected numbers in every column")
    if pixels and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 255):
        raise DataError(f"{path}: expected integer labels and pixels in 0..255")
    has_label = frame.shape[1] == count + 1
    labels = values[:, 0] if has_label else values[:0, 0]
    inputs = values[:, int(has_label):]
    if not pixels:
        return inputs.reshape(-1, *shape), labels
    return inputs.astype(np.uint8).reshape(-1, *shape), labels.astype(np.int64)


def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None
