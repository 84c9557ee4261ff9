"""A NumPy .npz file with x_train, y_train, x_test, y_test and, optionally, class_names."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from pipeline.data.records import RawData, checked, numbered_classes
from pipeline.errors import DataError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: Path) -> RawData:
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in REQUIRED if key not in archive.files]
            if missing:
                raise DataError(f"{path}: missing {', '.join(missing)}; expected arrays {', '.join(REQUIRED)} "
                                "and optionally class_names")
            arrays = {key: archive[key] for key in REQUIRED}
            names = archive["class_names"] if "class_names" in archive.files else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read it as a .npz file ({exc})") from None
    arrays["y_train"], arrays["y_test"] = arrays["y_train"].reshape(-1), arrays["y_test"].reshape(-1)
    class_names = tuple(str(n) for n in names) if names is not None else numbered_classes(arrays["y_train"],
                                                                                           arrays["y_test"])
    return checked(RawData(**arrays, source=str(path.resolve()), class_names=class_names))
