"""Install like a user: the built wheel holds every module and works outside the source tree;
the commands that do not train never load TensorFlow."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT

MODULES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pipeline").rglob("*.py"))
IMPORT_ALL = """
import importlib, pathlib, sys
import pipeline
home = pathlib.Path(pipeline.__file__).parent
for module in sys.argv[1:]:
    importlib.import_module(module)
print(home)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Built from a copy of the source tree, as a fresh clone would be: a local build/ folder left by an
    earlier build would otherwise slip old modules into the wheel."""
    source, out = tmp_path_factory.mktemp("source") / "project", tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", ".git", "mlruns",
                                                                 "__pycache__", ".pytest_cache", "exports"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, timeout=600)
    (built,) = out.glob("keras_sweep_pipeline-*.whl")
    return built


def test_the_wheel_holds_every_module(wheel):
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("pipeline/") and name.endswith(".py")}
    assert "pipeline/tracking/runs.py" in MODULES
    assert shipped == set(MODULES)


@pytest.mark.slow
def test_every_module_imports_from_the_installed_wheel_outside_the_tree(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    names = [m[:-3].replace("/", ".").removesuffix(".__init__") for m in MODULES]
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL, *names], capture_output=True, text=True,
                            cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(target / "pipeline"), "imported from the wheel"


def test_commands_that_do_not_train_never_import_tensorflow():
    probe = ("import sys, pipeline.cli, pipeline.supervisor, pipeline.worker, pipeline.report, pipeline.ui; "
             "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow.keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_pipeline_never_imports_the_bench_peers():
    """KerasTuner, optuna-integration and TensorBoard are the `bench` extra: row k's peers, not dependencies."""
    import ast

    peers = {"keras_tuner", "kerastuner", "optuna_integration", "tensorboard"}
    for module in MODULES:
        tree = ast.parse((ROOT / module).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & peers, f"{module} imports {imported & peers}"
