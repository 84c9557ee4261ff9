"""Install like a user: the built wheel holds every module and works outside the source tree;
the commands that do not train never load TensorFlow."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT, SWEEPS

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
        shipped = {name for name in archive.namelist() if name.startswith("pipeline/") and name.endswith(".py")
                   and not name.startswith("pipeline/sweeps/")}  # the example builders: data beside the sweeps
    assert "pipeline/tracking/runs.py" in MODULES
    assert shipped == set(MODULES)


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The wheel installed into a folder of its own, as pip would into a user's environment."""
    target = tmp_path_factory.mktemp("install") / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return target


def test_the_wheel_ships_the_example_sweeps_and_their_data(wheel):
    """sweeps/ stays at the top of the repository and ships as pipeline/sweeps/, the same bytes: the sweep files,
    their data and their builders."""
    shipped = [*SWEEPS.glob("*.yaml"), SWEEPS / "data" / "wine.csv", SWEEPS / "models" / "residual_mlp.py"]
    assert len(shipped) > 5
    with zipfile.ZipFile(wheel) as archive:
        for path in shipped:
            assert archive.read(f"pipeline/sweeps/{path.relative_to(SWEEPS).as_posix()}") == path.read_bytes()


@pytest.mark.slow
def test_a_bare_name_runs_a_shipped_example_from_the_installed_wheel(installed, tmp_path):
    """From a folder with nothing in it: `sweep run table` finds the example and its data in the install, the
    stores land in the working folder; `sweep examples --out sweeps` copies them out to edit."""
    env = {"PYTHONPATH": str(installed), "PATH": "", "HOME": str(tmp_path / "home")}
    work = tmp_path / "work"
    work.mkdir()

    def sweep(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                              cwd=work, env=env, timeout=600)

    listed = sweep("examples")
    assert listed.returncode == 0 and f"(in {installed / 'pipeline' / 'sweeps'})" in listed.stdout, listed.stderr
    ran = sweep("run", "table", "--n-trials", "1", "--no-progress")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "Study 'wine-table': 1 finished trials" in ran.stdout
    assert sorted(p.name for p in work.iterdir()) == ["mlruns"], "the stores, in the working folder"
    copied = sweep("examples", "--out", "sweeps")
    assert copied.returncode == 0 and (work / "sweeps" / "data" / "wine.csv").is_file(), copied.stderr
    assert (work / "sweeps" / "models" / "residual_mlp.py").is_file(), "sweeps/builder.yaml's network, beside it"


@pytest.mark.slow
def test_every_module_imports_from_the_installed_wheel_outside_the_tree(installed, tmp_path):
    target = installed
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


def test_sweep_run_starts_its_workers_before_loading_mlflow_and_optuna():
    """The workers' TensorFlow import is the longest wait of a sweep's start; the supervisor's own imports (MLflow,
    Optuna, matplotlib: ~3 s) run beside it, not before it. The probe stops the sweep as its workers would start."""
    probe = ("import sys\nfrom pipeline import Sweep\nfrom pipeline.worker_pool import WorkerPool\n"
             "def start_all(pool):\n"
             "    print(sorted(m for m in ('matplotlib', 'mlflow', 'optuna', 'sqlalchemy') if m in sys.modules))\n"
             "    raise SystemExit(0)\n"
             "WorkerPool.start_all = start_all\n"
             "Sweep.from_file('sweeps/seed.yaml', data_dir='/nonexistent').run(progress=False)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("uri, loaded", [("sqlite:///{tmp}/mlruns/mlflow.db", True),
                                         ("postgresql+psycopg://127.0.0.1:5432/absent", True),
                                         ("http://127.0.0.1:9", False)])
def test_preparing_a_tracking_store_loads_its_code_and_writes_nothing(tmp_path, uri, loaded):
    """What a sweep does while it waits (pipeline.tracking.prepare): nothing is created or contacted."""
    uri = uri.format(tmp=tmp_path)
    probe = ("import sys; from pipeline import tracking; "
             f"tracking.prepare({uri!r}); print('mlflow.store.tracking.sqlalchemy_store' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(loaded)
    assert list(tmp_path.iterdir()) == []


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
