"""The sweep's data: loaded from the source the sweep file names (`data.dataset`), checked, split three ways.

Sources: Keras' datasets by name (fashion_mnist, mnist, cifar10, cifar100), a folder of IDX files (`idx`),
a folder of images in class folders (`images`), a NumPy .npz file (`npz`), a CSV or Parquet table
(`table`). Each gives the same RawData: inputs as the source has them, integer labels and class names (or, with
`task: regression`, from npz and tables only, numbers and the label's name); everything downstream (the model's
input, the classes, plots, export, predict) follows from it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from pipeline.config import FOLDER_SOURCES, DataConfig
from pipeline.data.idx import load_idx_folder, read_idx, read_pixel_csv
from pipeline.data.images import load_image_folder
from pipeline.data.keras_sets import DATASETS as KERAS_DATASETS
from pipeline.data.keras_sets import load_keras_dataset
from pipeline.data.memory import check_fits
from pipeline.data.npz import load_npz
from pipeline.data.records import (RawData, Splits, array_digest, describe_folder, located_folder,
                                   portable_folder)
from pipeline.data.split import split_data
from pipeline.data.tables import load_table

SOURCES = (*KERAS_DATASETS, *FOLDER_SOURCES)  # FOLDER_SOURCES: the user's own files, named by data.data_dir

__all__ = ["KERAS_DATASETS", "RawData", "SOURCES", "Splits", "array_digest", "describe_folder",
           "load_raw", "load_splits", "located_folder", "portable_folder", "read_idx", "read_pixel_csv",
           "split_data"]


def load_raw(data: DataConfig, seed: int, workers: int = 1) -> RawData:
    """The source's arrays; an image folder is checked against the memory available before it is decoded."""
    if data.dataset in KERAS_DATASETS:
        return load_keras_dataset(data.dataset, data.data_dir)
    path = Path(data.data_dir).expanduser()
    if data.dataset == "idx":
        return load_idx_folder(path)
    if data.dataset == "npz":
        return load_npz(path, data.task)
    if data.dataset == "table":
        return load_table(path, data, seed)
    return load_image_folder(path, data.image_size, data.color, data.test_fraction, seed, workers)


def load_splits(data: DataConfig, seed: int, workers: int = 1) -> Splits:
    """The sweep's data and its train/validation/test split: the same for every process and command.

    Refused, with the estimate, when `workers` processes holding it would not fit in memory.
    """
    raw = load_raw(data, seed, workers)
    features = math.prod(raw.x_train.shape[1:]) if raw.x_train.ndim > 1 else 1
    check_fits(raw.x_train.nbytes + raw.x_test.nbytes, workers, raw.source, features=features)
    splits = split_data(raw, data.validation_fraction, seed, data.subset, data.test_subset)
    return dataclasses.replace(splits, fills_gaps=True) if data.missing == "impute" else splits
