"""A NumPy .npz file with x_train, y_train, x_test, y_test and, optionally, class_names.

With `task: regression` the labels are numbers (any numeric dtype, read as float64); the label has no name
in the file, so it is called REGRESSION_LABEL ("y", after the arrays' names): the served model's one output
column, the plots' axis. class_names, if present, is ignored then.

Each array's header is checked against the bytes the archive holds before the array is read, so a damaged
or crafted header is refused in one line instead of asking for terabytes, and arrays too large for the
memory available are refused with the estimate before they are read; `sweep predict` reads .npz inputs
through the same functions.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from pathlib import Path

import numpy as np

from pipeline.data.memory import check_fits
from pipeline.data.records import RawData, checked, continuous_hint, numbered_classes
from pipeline.errors import DataError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
REGRESSION_LABEL = "y"
NOT_NPZ = "not a valid .npz file (a zip archive of .npy arrays, as numpy.savez writes)"


def load_npz(path: Path, task: str = "classification") -> RawData:
    """The arrays, checked; refused before they are read when one worker could not hold them."""
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file")
    present = array_names(path)
    missing = [key for key in REQUIRED if key not in present]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)}; expected arrays {', '.join(REQUIRED)} "
                        "and optionally class_names")
    wanted = [*REQUIRED, *(["class_names"] if "class_names" in present else [])]
    headers = read_headers(path, wanted)
    inputs = [headers[key] for key in ("x_train", "x_test")]
    check_fits(sum(math.prod(shape) * dtype.itemsize for shape, dtype in inputs), 1, str(path),
               features=math.prod(inputs[0][0][1:]))
    arrays = read_arrays(path, wanted)
    names = arrays.pop("class_names", None)
    arrays["y_train"], arrays["y_test"] = _label_vector(path, arrays, "y_train"), _label_vector(path, arrays, "y_test")
    for key in ("y_train", "y_test"):
        _check_numbers(path, arrays[key], key, task)
    if task == "regression":
        raw = checked(RawData(**arrays, source=str(path.resolve()), class_names=(REGRESSION_LABEL,), task=task))
        return dataclasses.replace(raw, y_train=raw.y_train.astype(np.float64), y_test=raw.y_test.astype(np.float64))
    hint = continuous_hint(arrays["y_train"]) if arrays["y_train"].dtype.kind in "iu" else None
    if hint:
        raise DataError(f"{path}: y_train: {hint}")
    numbered = numbered_classes(arrays["y_train"], arrays["y_test"])
    class_names = numbered if names is None else _checked_names(path, names, len(numbered))
    return checked(RawData(**arrays, source=str(path.resolve()), class_names=class_names))


def array_names(path: Path) -> list[str]:
    """The names of the arrays a .npz file holds."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: {NOT_NPZ}")
    try:
        with zipfile.ZipFile(path) as archive:
            return [name.removesuffix(".npy") for name in archive.namelist() if name.endswith(".npy")]
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: {NOT_NPZ}; {exc}") from None


def read_arrays(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The named arrays, each header checked first against the bytes the archive holds for it."""
    read_headers(path, names)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: {NOT_NPZ}; {exc}") from None
    except MemoryError:
        raise DataError(f"{path}: its arrays do not fit in the memory available") from None


def read_headers(path: Path, names: list[str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each named array's shape and dtype, from its header alone, checked."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {name: _checked_header(path, archive, name) for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: {NOT_NPZ}; {exc}") from None


def _checked_header(path: Path, archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Refuse an array of Python objects (reading it would run pickle) or one whose header claims more bytes
    than the archive holds for it (a damaged or crafted file)."""
    info = archive.getinfo(f"{name}.npy")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(member, max_header_size=10_000)
        offset = member.tell()
    if dtype.hasobject:
        raise DataError(f"{path}: {name} holds Python objects (pickled); save numbers or text with numpy.savez")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > info.file_size - offset:
        raise DataError(f"{path}: {name}'s header claims shape {shape} of {dtype} ({claimed / 2**30:.3g} GiB) but "
                        f"the file holds {info.file_size - offset} bytes for it; the file is damaged, write it again")
    return shape, dtype


def _label_vector(path: Path, arrays: dict, key: str) -> np.ndarray:
    """One label per input: N, or N x 1 as a column; a one-hot or multi-label N x K is refused by its shape."""
    labels = arrays[key]
    if labels.ndim == 2 and labels.shape[1] == 1:
        return labels.reshape(-1)
    if labels.ndim != 1:
        raise DataError(f"{path}: {key} has shape {labels.shape}; expected one integer class per input, shape "
                        f"({len(labels)},) (one-hot labels: save {key}.argmax(axis=1))")
    return labels


def _check_numbers(path: Path, labels: np.ndarray, key: str, task: str) -> None:
    """Labels are numbers: text labels (a class's name per input) are refused here, naming the layout the
    loader takes, rather than failing inside numpy when the classes are counted."""
    if labels.dtype.kind in "biuf":
        return
    found = ("text" if labels.dtype.kind in "US" else f"{labels.dtype} values") + \
        f" ({', '.join(repr(str(v)) for v in labels[:3].tolist())}, ...)"
    if task == "regression":
        raise DataError(f"{path}: {key} holds {found}; task regression expects numbers, one per input")
    raise DataError(f"{path}: {key} holds {found}; expected class numbers 0..N-1, "
                    "one integer per input, and optionally an array class_names holding the N names in that order "
                    "(from text labels: names, y = numpy.unique(labels, return_inverse=True))")


def _checked_names(path: Path, names: np.ndarray, classes: int) -> tuple[str, ...]:
    """One distinct name per class the labels use: a surplus name names nothing, and two classes under one
    name could not be told apart in the predictions."""
    if names.ndim != 1:
        raise DataError(f"{path}: class_names has shape {names.shape}; expected one name per class, a 1-D array")
    text = tuple(str(n) for n in names.tolist())
    if len(text) > classes:
        raise DataError(f"{path}: class_names has {len(text)} names but the labels use {classes} classes "
                        f"(0..{classes - 1}); give one name per class")
    repeated = sorted({n for n in text if text.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: class_names names {', '.join(map(repr, repeated))} more than once; each class "
                        "needs its own name")
    return text
