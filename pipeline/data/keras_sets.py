"""Keras' own datasets by name: fashion_mnist (the default), mnist, cifar10, cifar100.

They load through Keras' loaders and cache (~/.keras/datasets, downloading when missing). Offline, the
MNIST pair also loads from a folder of its four IDX files (and Fashion-MNIST from Kaggle's CSVs); every
failure says how to supply the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.data.idx import IDX_FILES, holds_idx, load_idx_folder, read_pixel_csv
from pipeline.data.records import RawData, checked
from pipeline.errors import DataError

CIFAR100_FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()


@dataclass(frozen=True)
class KerasDataset:
    module: str  # keras.datasets.<module>
    class_names: tuple[str, ...]
    cache: str  # what Keras keeps under ~/.keras/datasets/
    offline: str  # how else to supply it

    def load(self) -> tuple[tuple, tuple]:
        import importlib

        loader = importlib.import_module(f"keras.datasets.{self.module}").load_data
        return loader(label_mode="fine") if self.module == "cifar100" else loader()


_IDX_HINT = ("--data-dir DIR (or data.data_dir) pointing at a folder with its four IDX files "
             f"({', '.join(f'{name}.gz' for name in IDX_FILES.values())})")
DATASETS = {
    "fashion_mnist": KerasDataset(
        "fashion_mnist", ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                          "Ankle boot"),
        "the four IDX .gz files in ~/.keras/datasets/fashion-mnist/",
        f"{_IDX_HINT}, or Kaggle's fashion-mnist_train.csv and fashion-mnist_test.csv"),
    "mnist": KerasDataset("mnist", tuple(str(i) for i in range(10)), "mnist.npz in ~/.keras/datasets/", _IDX_HINT),
    "cifar10": KerasDataset(
        "cifar10", ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "cifar-10-batches-py.tar.gz in ~/.keras/datasets/", "data.dataset: npz with the arrays in a .npz file"),
    "cifar100": KerasDataset("cifar100", tuple(CIFAR100_FINE), "cifar-100-python.tar.gz in ~/.keras/datasets/",
                             "data.dataset: npz with the arrays in a .npz file"),
}
KAGGLE_CSVS = {"train": "fashion-mnist_train.csv", "test": "fashion-mnist_test.csv"}


def load_keras_dataset(name: str, data_dir: str | None) -> RawData:
    """Through Keras' loader, or (MNIST and Fashion-MNIST) from a folder of their files."""
    dataset = DATASETS[name]
    if data_dir is not None:
        return _from_folder(name, dataset, Path(data_dir).expanduser())
    try:
        (x_train, y_train), (x_test, y_test) = dataset.load()
    except Exception as exc:  # Keras raises a bare Exception on a failed download
        raise DataError(f"Keras could not load {name} (download failed or cache damaged: {exc}). "
                        f"{how_to_supply(name)}") from None
    return checked(RawData(x_train, y_train.reshape(-1), x_test, y_test.reshape(-1), f"keras.datasets.{name}",
                           dataset.class_names))


def how_to_supply(name: str) -> str:
    dataset = DATASETS[name]
    return (f"Supply the data without a download: put {dataset.cache} where Keras' loader finds it, or use "
            f"{dataset.offline}.")


def _from_folder(name: str, dataset: KerasDataset, folder: Path) -> RawData:
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found. {how_to_supply(name)}")
    if name in ("fashion_mnist", "mnist") and holds_idx(folder):
        return load_idx_folder(folder, dataset.class_names)
    if name == "fashion_mnist" and all((folder / f).is_file() for f in KAGGLE_CSVS.values()):
        x_train, y_train = read_pixel_csv(folder / KAGGLE_CSVS["train"], (28, 28), labelled=True)
        x_test, y_test = read_pixel_csv(folder / KAGGLE_CSVS["test"], (28, 28), labelled=True)
        return checked(RawData(x_train, y_train, x_test, y_test, str(folder.resolve()), dataset.class_names))
    raise DataError(f"{folder}: holds none of {name}'s files. {how_to_supply(name)}")

