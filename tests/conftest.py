"""Shared fixtures: the real Fashion-MNIST files, and the real sweep files shrunk to tiny runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "sweeps"


def _data_dir() -> Path:
    return Path(os.environ.get("FASHION_MNIST_DIR", ROOT.parent / "shared" / "data" / "fashion-mnist"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The four IDX files; CI has them at ../shared/data/fashion-mnist beside the checkout."""
    folder = _data_dir()
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST IDX files not found in {folder}; set FASHION_MNIST_DIR to their folder")
    return folder


@pytest.fixture
def stores(tmp_path: Path) -> dict[str, str]:
    """A fresh Optuna storage and MLflow store per test."""
    return {"storage": f"sqlite:///{tmp_path}/optuna.db", "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}


def write_sweep(tmp_path: Path, source: str = "smoke.yaml", name: str = "tiny.yaml", **changes) -> Path:
    """Copy a real sweep file with `section__key=value` replaced (None deletes the key)."""
    raw = yaml.safe_load((SWEEPS / source).read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__", 1)
        raw.setdefault(section, {})
        if value is None:
            raw[section].pop(key, None)
        else:
            raw[section][key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def tiny_sweep(tmp_path: Path, data_dir: Path, stores: dict[str, str]) -> Path:
    """sweeps/smoke.yaml shrunk to a few hundred images and two trials, with stores in tmp_path."""
    return write_sweep(tmp_path, study__n_trials=2, data__subset=600, data__test_subset=300,
                       data__data_dir=str(data_dir), study__storage=stores["storage"],
                       tracking__tracking_uri=stores["tracking_uri"])


@pytest.fixture(scope="module")
def module_sweep(tmp_path_factory, data_dir) -> Path:
    """One tiny sweep of three trials, already run, shared by a module's tests that only read or export it.

    Its study is in a journal file, the default storage."""
    from pipeline import cli

    folder = tmp_path_factory.mktemp("swept")
    path = write_sweep(folder, study__n_trials=3, data__subset=600, data__test_subset=300,
                       data__data_dir=str(data_dir), study__storage=f"journal:///{folder}/optuna.journal",
                       tracking__tracking_uri=f"sqlite:///{folder}/mlflow.db",
                       tracking__registered_model="smoke-classifier")
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    return path
