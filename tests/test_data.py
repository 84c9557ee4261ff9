"""Fashion-MNIST's own files (IDX and Kaggle CSVs), the stratified split and preprocessing."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from pipeline.data import split_data
from pipeline.data.keras_sets import DATASETS, load_keras_dataset
from pipeline.data.idx import read_pixel_csv
from pipeline.errors import DataError
from pipeline.preprocessing import fit_stats, preprocessing_layers

CLASS_NAMES = DATASETS["fashion_mnist"].class_names


def load_fashion_mnist(folder):
    return load_keras_dataset("fashion_mnist", str(folder))


@pytest.fixture(scope="module")
def raw(data_dir):
    return load_fashion_mnist(data_dir)


def test_idx_folder_loads_the_full_dataset(raw):
    assert raw.x_train.shape == (60000, 28, 28) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (10000, 28, 28)
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    assert np.bincount(raw.y_test).tolist() == [1000] * 10
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[0] == "T-shirt/top" and CLASS_NAMES[9] == "Ankle boot"
    assert len(raw.digest()) == 16


def test_kaggle_csvs_load_like_idx(raw, tmp_path):
    for split, x, y in (("train", raw.x_train[:50], raw.y_train[:50]), ("test", raw.x_test[:20], raw.y_test[:20])):
        header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
        rows = np.column_stack([y, x.reshape(len(x), -1)])
        np.savetxt(tmp_path / f"fashion-mnist_{split}.csv", rows, fmt="%d", delimiter=",", header=header,
                   comments="")
    loaded = load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(loaded.x_train, raw.x_train[:50])
    np.testing.assert_array_equal(loaded.y_test, raw.y_test[:20])


def test_csv_with_wrong_columns_names_the_file(tmp_path):
    path = tmp_path / "fashion-mnist_train.csv"
    path.write_text("label,pixel1\n3,0\n")
    with pytest.raises(DataError, match=f"{path}: expected 785 columns"):
        read_pixel_csv(path, (28, 28), labelled=True)


def test_missing_folder_names_the_path_and_the_ways_to_supply_data(tmp_path):
    with pytest.raises(DataError) as error:
        load_fashion_mnist(tmp_path / "absent")
    message = str(error.value)
    assert str(tmp_path / "absent") in message
    assert "--data-dir" in message and "fashion-mnist_train.csv" in message and "~/.keras/datasets" in message


def test_folder_without_data_files_says_what_it_expected(tmp_path):
    with pytest.raises(DataError, match="holds none of fashion_mnist's files"):
        load_fashion_mnist(tmp_path)


def test_corrupt_idx_file_names_the_path(data_dir, tmp_path):
    for name in data_dir.glob("*.gz"):
        shutil.copy(name, tmp_path / name.name)
    damaged = tmp_path / "train-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:200])
    with pytest.raises(DataError, match=f"{damaged}: cannot read IDX file"):
        load_fashion_mnist(tmp_path)


def test_truncated_idx_payload_is_reported(data_dir, tmp_path):
    for name in data_dir.glob("*.gz"):
        shutil.copy(name, tmp_path / name.name)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(labels, "rb") as handle:
        payload = handle.read()
    with gzip.open(labels, "wb") as handle:
        handle.write(payload[:-10])
    with pytest.raises(DataError, match="header says"):
        load_fashion_mnist(tmp_path)


def test_split_is_stratified_disjoint_and_leaves_test_alone(raw):
    splits = split_data(raw, validation_fraction=0.1, seed=0)
    assert len(splits.y_train) == 54000 and len(splits.y_val) == 6000
    assert np.bincount(splits.y_val).tolist() == [600] * 10
    assert splits.x_test is raw.x_test
    small = split_data(raw, validation_fraction=0.2, seed=0, subset=1000, test_subset=200)
    assert len(small.y_train) == 800 and len(small.y_val) == 200 and len(small.y_test) == 200
    assert np.bincount(small.y_test).tolist() == [20] * 10


def test_preprocessing_layers_take_raw_uint8_images(raw):
    splits = split_data(raw, validation_fraction=0.2, seed=0, subset=2000, test_subset=500)
    assert splits.x_train.dtype == np.uint8 and splits.class_names == CLASS_NAMES
    stats = fit_stats(splits.x_train)
    flat = splits.x_train.reshape(1600, -1)
    (normalize,) = preprocessing_layers("normalize", stats)
    scaled = np.asarray(normalize(flat))
    assert scaled.dtype == np.float32 and scaled.min() >= 0.0 and scaled.max() <= 1.0
    (standardize,) = preprocessing_layers("standardize", stats)
    standard = np.asarray(standardize(flat))
    varying = flat.std(axis=0) > 0
    np.testing.assert_allclose(standard.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(standard.std(axis=0)[varying], 1.0, atol=1e-3)
    assert np.all(standard[:, ~varying] == 0), "a pixel constant in training maps to 0, not to infinity"
    # Statistics come from the training split alone: the validation split is not re-centred.
    validation = np.asarray(standardize(splits.x_val.reshape(len(splits.x_val), -1)))
    assert abs(validation.mean()) > 1e-4


@pytest.mark.parametrize("shape", [(3000, 64, 64, 3), (3, 3000, 3000)], ids=["rows in blocks", "columns in blocks"])
def test_the_statistics_are_exact_within_a_bounded_working_set(shape):
    """Issue 21: the statistics once made two float64 copies of each 8,192-row block (1.6 GiB for 110 MB of
    64x64x3 images, an OOM kill at 4000x4000). Measured with tracemalloc, to which numpy reports its arrays:
    at most one 64 MiB float64 block and 48 bytes per feature beside the input, exact to float32."""
    import tracemalloc

    from pipeline.preprocessing import stats_bytes

    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    features = images[0].size
    tracemalloc.start()
    try:
        stats = fit_stats(images)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= stats_bytes(features) * 1.02, f"{peak / 2**20:.0f} MiB"  # 65 MiB for 3000 x 64x64x3, once 590
    flat = images.reshape(len(images), -1).astype(np.float64)
    np.testing.assert_allclose(stats.mean, flat.mean(axis=0), rtol=1e-6)
    variance = flat.var(axis=0)
    np.testing.assert_allclose(stats.variance, np.where(variance == 0, 1.0, variance), rtol=1e-5)  # constant: 1
    assert np.array_equal(stats.minimum, flat.min(axis=0)) and np.array_equal(stats.maximum, flat.max(axis=0))


def test_the_statistics_of_a_table_without_numeric_columns_are_empty():
    rows = np.array([("red",), ("blue",)], dtype=[("colour", "U4")])
    stats = fit_stats(rows)
    assert stats.mean.shape == stats.variance.shape == (0,) and stats.categories == {"colour": ("blue", "red")}
