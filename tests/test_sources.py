"""The user's own data: image folders, .npz files, IDX folders of any shape, and Keras' datasets by name.

scikit-learn's bundled digits (1,797 images of 8x8) are written out in each layout; each source is swept
for real, exported, and predicted from, and each bad input is refused naming its file or class.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline import cli, config as config_module
from pipeline.data import SOURCES, load_splits
from pipeline.data.images import load_image_folder
from pipeline.data.npz import load_npz
from pipeline.errors import DataError

from conftest import write_sweep
from test_bad_inputs import write_idx

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images * (255 / 16)).round().astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def write_folder(root, images, labels, mode="L", scale=1):
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image).convert(mode)
        if scale != 1:
            picture = picture.resize((8 * scale, 8 * scale), Image.NEAREST)
        picture.save(folder / f"{index:04d}.png")
    return root


@pytest.fixture(scope="module")
def image_folder(digits, tmp_path_factory):
    images, labels = digits
    root = tmp_path_factory.mktemp("digits-images")
    write_folder(root / "train", images[:1500], labels[:1500])
    write_folder(root / "test", images[1500:], labels[1500:])
    return root


def test_every_source_the_config_allows_is_one_the_data_package_loads():
    assert set(config_module.DATASETS) == set(SOURCES)


def test_image_folder_with_train_and_test_keeps_them_and_names_classes_by_folder(image_folder, digits):
    raw = load_image_folder(image_folder, None, None, 0.2, seed=0)
    assert raw.class_names == tuple(sorted(NAMES))
    assert raw.x_train.shape == (1500, 8, 8) and raw.x_test.shape == (297, 8, 8) and raw.x_train.dtype == np.uint8
    first = tuple(sorted(NAMES)).index("zero")
    assert np.array_equal(raw.x_train[raw.y_train == first][0], digits[0][digits[1] == 0][0])


def test_one_folder_is_split_by_class_and_colour_and_size_follow_the_settings(digits, tmp_path):
    images, labels = digits
    write_folder(tmp_path / "all", images[:400], labels[:400], mode="RGB", scale=2)
    raw = load_image_folder(tmp_path / "all", (8, 8), None, 0.25, seed=1)
    assert raw.x_train.shape[1:] == (8, 8, 3) and len(raw.y_test) == 100
    assert np.bincount(raw.y_test).min() >= 8, "stratified"
    gray = load_image_folder(tmp_path / "all", None, "grayscale", 0.25, seed=1)
    assert gray.x_train.shape[1:] == (16, 16)


def test_the_decoded_images_are_cached_and_the_cache_follows_the_files(digits, tmp_path):
    images, labels = digits
    root = write_folder(tmp_path / "cached", images[:60], labels[:60])
    first = load_image_folder(root, None, None, 0.2, seed=0)
    again = load_image_folder(root, None, None, 0.2, seed=0)
    assert np.array_equal(first.x_train, again.x_train)
    changed = next((root / "zero").iterdir())
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(changed)
    after = load_image_folder(root, None, None, 0.2, seed=0)
    both = np.concatenate([after.x_train, after.x_test])
    assert (both == 255).all(axis=(1, 2)).any(), "the changed file was decoded again, not read from the cache"


@pytest.mark.parametrize("damage, message", [
    ("empty class", "class folder without images"),
    ("corrupt image", "cannot decode the image"),
    ("mixed sizes", "images differ in size"),
    ("single class", "at least two classes"),
    ("unseen test class", "classes training never saw: zzz"),
])
def test_bad_image_folders_are_refused_naming_the_file_or_class(damage, message, digits, tmp_path):
    images, labels = digits
    root = write_folder(tmp_path / "bad" / "train", images[:100], labels[:100]).parent
    write_folder(root / "test", images[100:150], labels[100:150])
    if damage == "empty class":
        (root / "train" / "zzz").mkdir()
    elif damage == "corrupt image":
        (root / "train" / "one" / "0001.png").write_bytes(b"not a png")
    elif damage == "mixed sizes":
        Image.fromarray(np.zeros((9, 9), np.uint8)).save(root / "train" / "one" / "0001.png")
    elif damage == "single class":
        for part in ("train", "test"):
            for other in (root / part).iterdir():
                if other.name != "eight":
                    shutil.rmtree(other)
        message = "a classifier needs at least two classes; found only 'eight'"
    else:
        (root / "test" / "zzz").mkdir()
        Image.fromarray(images[0]).save(root / "test" / "zzz" / "x.png")
    config = write_sweep(tmp_path, data__dataset="images", data__data_dir=str(root))
    from pipeline.config import load_sweep

    with pytest.raises(DataError, match=message):
        load_splits(load_sweep(config).data, seed=0)


def test_npz_with_and_without_class_names(digits, tmp_path):
    images, labels = digits
    np.savez(tmp_path / "d.npz", x_train=images[:1500], y_train=labels[:1500], x_test=images[1500:],
             y_test=labels[1500:], class_names=np.array(NAMES))
    raw = load_npz(tmp_path / "d.npz")
    assert raw.class_names == NAMES and raw.x_test.shape == (297, 8, 8)
    np.savez(tmp_path / "plain.npz", x_train=images, y_train=labels, x_test=images[:10], y_test=labels[:10])
    assert load_npz(tmp_path / "plain.npz").class_names == tuple(str(i) for i in range(10))
    np.savez(tmp_path / "short.npz", x_train=images)
    with pytest.raises(DataError, match="missing y_train, x_test, y_test"):
        load_npz(tmp_path / "short.npz")


def _sweep(tmp_path, stores, **data):
    return write_sweep(tmp_path, study__n_trials=2, study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"], data__subset=None, data__test_subset=None,
                       data__validation_fraction=0.2, search_space__epochs=4, search_space__batch_size=32,
                       search_space__units=64, search_space__learning_rate=0.003,
                       **{f"data__{k}": v for k, v in data.items()})


@pytest.mark.parametrize("source", ["images", "npz", "idx"])
def test_each_source_sweeps_exports_and_predicts_end_to_end(source, image_folder, digits, tmp_path, stores, capsys):
    images, labels = digits
    if source == "images":
        data_dir = image_folder
    elif source == "npz":
        data_dir = tmp_path / "digits.npz"
        np.savez(data_dir, x_train=images[:1500], y_train=labels[:1500], x_test=images[1500:], y_test=labels[1500:],
                 class_names=np.array(NAMES))
    else:
        data_dir = write_idx(tmp_path / "idx", images[:1500], labels[:1500], images[1500:], labels[1500:])
    path = _sweep(tmp_path, stores, dataset=source, data_dir=str(data_dir))
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    out = tmp_path / "export"
    assert cli.main(["export", str(path), "--out", str(out), "--name", f"digits-{source}"]) == 0
    info = json.loads((out / "metadata.json").read_text())
    assert info["input"] == {"shape": [8, 8], "dtype": "uint8"} and len(info["class_names"]) == 10
    assert info["test_accuracy"] > 0.5, "well above chance (0.1) on 8x8 digits"
    Image.fromarray(images[1700]).resize((32, 32)).convert("RGB").save(tmp_path / "digit.png")
    capsys.readouterr()
    assert cli.main(["predict", str(out), str(tmp_path / "digit.png"), "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert answer["class"] in info["class_names"] and set(answer["probabilities"]) == set(info["class_names"])


def test_a_folder_source_without_a_folder_is_refused(tmp_path, stores, capsys):
    path = write_sweep(tmp_path, data__dataset="images", study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"])
    assert cli.main(["run", str(path)]) == 2
    assert "data.data_dir: data.dataset 'images' reads the user's own files" in capsys.readouterr().err


def test_mnist_by_name_reads_its_idx_folder_offline_with_its_class_names(data_dir):
    from pipeline.data.keras_sets import how_to_supply, load_keras_dataset

    raw = load_keras_dataset("mnist", str(data_dir))  # Fashion-MNIST's files have MNIST's layout
    assert raw.class_names == tuple(str(i) for i in range(10)) and raw.x_train.shape == (60000, 28, 28)
    assert "cifar-10-batches-py.tar.gz in ~/.keras/datasets/" in how_to_supply("cifar10")


def test_data_that_would_not_fit_in_memory_is_refused_with_the_estimate(digits, tmp_path, monkeypatch):
    from pipeline.data import memory

    memory.check_fits(7 * memory.GIB, 1, "x", available=22 * memory.GIB + 1)  # the README's largest dataset
    with pytest.raises(DataError, match=r"x: the data takes 7\.0 GiB in memory; 2 worker\(s\) would need about "
                                        r"44\.0 GiB .* but 22\.0 GiB is available"):
        memory.check_fits(7 * memory.GIB, 2, "x", available=22 * memory.GIB)
    images, labels = digits
    root = write_folder(tmp_path / "big", images[:50], labels[:50])
    monkeypatch.setattr(memory, "available_bytes", lambda: memory.GIB // 2)  # less than one worker's baseline
    with pytest.raises(DataError, match="GiB is available: train on data.subset, use fewer --workers"):
        load_image_folder(root, None, "grayscale", 0.2, seed=0)
