"""Shared fixtures: the real Fashion-MNIST files, and the real sweep files shrunk to tiny runs."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "sweeps"
POSTGRES = os.environ.get("SWEEP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


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
def new_database():
    """`new_database(role)`: the URL of a fresh PostgreSQL database on the test server (POSTGRES, whose database
    `test` it connects to); every one made is dropped after the test, connections and all."""
    made = []

    def create(role: str) -> str:
        name = f"sweep_test_{uuid.uuid4().hex[:10]}_{role}"
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return f"{POSTGRES}/{name}"

    yield create
    with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
        for name in made:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_databases(new_database) -> list[str]:
    """Two fresh databases: Optuna's and MLflow's."""
    return [new_database("optuna"), new_database("mlflow")]


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
