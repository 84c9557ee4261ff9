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

    memory.check_fits(7 * memory.GIB, 1, "x", available=22.1 * memory.GIB)  # the README's largest dataset
    with pytest.raises(DataError, match=r"x: the data takes 7\.0 GiB in memory; 2 worker\(s\) would need about "
                                        r"44\.1 GiB .* but 22\.0 GiB is available: use fewer --workers"):
        memory.check_fits(7 * memory.GIB, 2, "x", available=22 * memory.GIB)
    images, labels = digits
    root = write_folder(tmp_path / "big", images[:50], labels[:50])
    monkeypatch.setattr(memory, "available_bytes", lambda: memory.GIB // 2)  # less than one worker's baseline
    with pytest.raises(DataError, match="GiB is available: a machine with more memory"):
        load_image_folder(root, None, "grayscale", 0.2, seed=0, cache=tmp_path / "cache")


def test_an_npz_too_large_is_refused_from_its_headers_before_it_is_read(digits, tmp_path, monkeypatch):
    from pipeline.data import memory

    images, labels = digits
    np.savez(tmp_path / "d.npz", x_train=images, y_train=labels, x_test=images[:10], y_test=labels[:10])
    monkeypatch.setattr(memory, "available_bytes", lambda: memory.GIB // 2)
    monkeypatch.setattr(np, "load", None)  # reading an array would fail: the refusal comes first
    with pytest.raises(DataError, match=r"d\.npz: the data takes 0\.0 GiB in memory; 1 worker\(s\) would need"):
        load_npz(tmp_path / "d.npz")


def test_the_estimate_counts_the_statistics_and_advises_what_shrinks_the_decoded_images():
    """Issue 21's repro: 200 pictures resized to 4000x4000 on a machine with 22 GiB available. The statistics
    once took 16 bytes per value of the training set (an OOM kill); now a 64 MiB block and 48 bytes per pixel,
    and the estimate counts them."""
    from pipeline.data import memory
    from pipeline.preprocessing import stats_bytes

    pixels = 4000 * 4000
    assert memory.needed_bytes(200 * pixels, 1, pixels) == memory.GIB + 3 * 200 * pixels + stats_bytes(pixels)
    assert stats_bytes(pixels) < memory.GIB < 16 * 200 * pixels
    with pytest.raises(DataError) as refused:
        memory.check_images_fit(200, (4000, 4000, 3), 1, "pictures", available=22 * memory.GIB)
    assert str(refused.value) == (
        "pictures (200 images of 4000x4000x3): the data takes 8.9 GiB in memory; 1 worker(s) would need about "
        "30.0 GiB (each holds the data 3 times over, plus 1 GiB for TensorFlow and the rest and 2.2 GiB for the "
        "preprocessing statistics) but 22.0 GiB is available: a smaller data.image_size (up to [3400, 3400] fits), "
        "data.color: grayscale (a third of the memory), fewer images in the folder (up to 140 at this size), or a "
        "machine with more memory")
    memory.check_images_fit(200, (4000, 4000), 1, "pictures", available=22 * memory.GIB)  # 10.7 GiB: fits
    with pytest.raises(DataError, match=r"32\.2 GiB .* \(up to \[3223, 3223\] fits\), fewer images in the folder "
                                        r"\(up to 124 at this size\), fewer --workers \(2 fit\), or a machine"):
        memory.check_images_fit(200, (4000, 4000), 3, "pictures", available=22 * memory.GIB)


def sixteen_bit(image: np.ndarray) -> Image.Image:
    """A digit as a 16-bit gray picture over a dark level of 1000 (as a camera's sensor gives): every value is
    above 255, where Pillow's own conversion to 8 bits clipped them all to one white picture."""
    return Image.fromarray((1000 + image.astype(np.uint16) * 200))


def test_sixteen_bit_pictures_are_scaled_to_eight_bits_train_above_chance_and_predict_alike(digits, tmp_path):
    import keras

    from pipeline.data.records import InputSpec
    from pipeline.hyperparameters import Hyperparameters
    from pipeline.model import build_model
    from pipeline.predict import Classifier, read_inputs
    from pipeline.preprocessing import fit_stats

    images, labels = digits
    for part, chosen in (("train", slice(0, 1200)), ("test", slice(1200, 1500))):
        for index, (image, label) in enumerate(zip(images[chosen], labels[chosen])):
            (tmp_path / part / NAMES[label]).mkdir(parents=True, exist_ok=True)
            sixteen_bit(image).save(tmp_path / part / NAMES[label] / f"{index:04d}.png")
    assert Image.open(next((tmp_path / "train" / "zero").iterdir())).mode == "I;16"
    raw = load_image_folder(tmp_path, None, None, 0.2, seed=0, cache=tmp_path / "cache")
    order = [i for name in sorted(NAMES) for i in range(1200) if NAMES[labels[i]] == name]  # folder by folder
    assert np.array_equal(raw.x_train, ((1000 + images[order].astype(np.uint32) * 200) * 255 + 32767) // 65535)
    assert raw.x_train.dtype == np.uint8 and (raw.x_train.min(), raw.x_train.max()) == (4, 202), "not all 255"
    keras.utils.set_random_seed(0)
    model = build_model(Hyperparameters(learning_rate=0.003), InputSpec.of(raw.x_train), 10, fit_stats(raw.x_train))
    model.fit(raw.x_train, raw.y_train, epochs=10, batch_size=32, verbose=0)
    accuracy = (model.predict(raw.x_test, verbose=0).argmax(axis=1) == raw.y_test).mean()
    assert accuracy > 0.5, "well above chance (0.1)"
    picture = next((tmp_path / "test" / "seven").iterdir())
    served = read_inputs(picture, Classifier(model, raw.class_names))
    assert any(np.array_equal(served[0], x) for x in raw.x_test), "predict decodes the file as training did"


def test_hidden_files_in_class_folders_are_not_data(digits, tmp_path):
    images, labels = digits
    root = write_folder(tmp_path / "mac", images[:40], labels[:40])
    (root / "zero" / "._0000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (root / "one" / ".ipynb_checkpoints").mkdir()
    (root / "one" / ".ipynb_checkpoints" / "0001-checkpoint.png").write_bytes(b"not a picture")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    raw = load_image_folder(root, None, None, 0.25, seed=0, cache=tmp_path / "cache")
    assert len(raw.y_train) + len(raw.y_test) == 40 and raw.class_names == tuple(sorted(set(NAMES[:10])))


def test_a_damaged_cache_file_is_a_miss_decoded_again_and_replaced(digits, tmp_path):
    images, labels = digits
    root = write_folder(tmp_path / "cached", images[:60], labels[:60])
    cache = tmp_path / "cache"
    first = load_image_folder(root, None, None, 0.2, seed=0, cache=cache)
    (cached,) = cache.iterdir()
    whole = cached.read_bytes()
    for damage in (whole[:len(whole) // 2], whole[:40], b"", b"garbage" * 10):
        cached.write_bytes(damage)
        again = load_image_folder(root, None, None, 0.2, seed=0, cache=cache)
        assert np.array_equal(first.x_train, again.x_train) and np.array_equal(first.x_test, again.x_test)
        assert cached.read_bytes() == whole, "the damaged file was replaced"
    assert [p.name for p in cache.iterdir()] == [cached.name], "no partial files left beside it"


def test_npz_text_labels_are_refused_naming_the_layout_it_takes(digits, tmp_path):
    images, _ = digits
    words = np.array(["shoe", "shirt"] * 40)
    np.savez(tmp_path / "words.npz", x_train=images[:80], y_train=words, x_test=images[80:90], y_test=words[:10])
    with pytest.raises(DataError, match=r"words\.npz: y_train holds text \('shoe', 'shirt', 'shoe', \.\.\.\); "
                                        r"expected class numbers 0\.\.N-1, one integer per input, and optionally "
                                        r"an array class_names"):
        load_npz(tmp_path / "words.npz")
    with pytest.raises(DataError, match=r"y_train holds text .*; task regression expects numbers"):
        load_npz(tmp_path / "words.npz", "regression")
