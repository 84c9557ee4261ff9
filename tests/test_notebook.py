"""docs/quickstart.ipynb run by a real Jupyter kernel, and a kernel interrupt stopping a sweep as Ctrl-C does:
what a notebook user sees (tables, plots, no TensorFlow start-up noise) and what is left behind (issue 24)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import mlflow
import nbformat
import optuna
import pytest
import sqlalchemy
from jupyter_client import KernelManager
from nbclient import NotebookClient
from optuna.trial import TrialState

from pipeline import keys
from conftest import ROOT, write_sweep

NOTEBOOK = ROOT / "docs" / "quickstart.ipynb"
# TensorFlow's and CUDA's start-up lines, lowercased; and a traceback, which no cell should show.
NOISE = ("cuda", "onednn", "tf_enable_onednn_opts", "absl::", "computation placer", "unable to register",
         "cpu_feature_guard", "traceback")


def kernel_env() -> dict[str, str]:
    """The environment of a user's fresh kernel: without what an earlier test in this process may have set
    (pipeline.api.quiet_libraries silences TensorFlow through it) or a headless matplotlib backend, so the
    kernel has to be quiet, and show its plots, on its own."""
    set_here = ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MPLBACKEND")
    return {name: value for name, value in os.environ.items() if name not in set_here}


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory, data_dir):
    """The quickstart notebook executed in a folder of its own, on the shared Fashion-MNIST files, with two
    trials instead of the smoke sweep's four."""
    folder = tmp_path_factory.mktemp("notebook")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    parameters.source = f"DATA_DIR = {str(data_dir)!r}\nN_TRIALS = 2"
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    client.execute(env=kernel_env())  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    return notebook, folder


def test_committed_notebook_has_no_outputs():
    """The notebook is committed clean: no outputs, no execution counts, a python3 kernel, a parameters cell."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for cell in code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None, cell.source
    assert any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells)


def test_notebook_shows_the_trials_the_curves_and_the_predictions(executed):
    """The progress bar is a Jupyter widget, the trials DataFrame names its columns, both figures render as
    PNG, the best model beats chance on the test images, and the study and runs are stored under mlruns/
    where the notebook ran."""
    notebook, folder = executed
    cells = code_cells(notebook)
    run = next(cell for cell in cells if cell.source.rstrip().endswith("sweep.run()"))
    assert any("application/vnd.jupyter.widget-view+json" in output.get("data", {}) for output in run.outputs)
    assert "best trial" in run.outputs[-1]["data"]["text/plain"], "the run's summary, as its cell's value"
    trials = next(cell for cell in cells if cell.source.strip() == "sweep.trials()")
    shown = trials.outputs[0]["data"]
    table = shown.get("text/html", shown.get("text/plain"))
    for column in ("trial", "state", "val_accuracy", "test_accuracy", "run_id"):
        assert column in table
    assert "COMPLETE" in table
    images = [output for cell in cells for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(images) == 2, "the learning curve and the grid of predictions"
    printed = "".join(output.get("text", "") for cell in cells for output in cell.outputs)
    accuracy = float(re.search(r"accuracy on \d+ test images: ([\d.]+)", printed).group(1))
    assert accuracy > 0.3, f"ten classes: chance is 0.1, got {accuracy}"
    assert (folder / "mlruns" / "optuna.journal").is_file() and (folder / "mlruns" / "mlflow.db").is_file()


def test_notebook_output_has_no_startup_noise_or_traceback(executed):
    """Every stream the kernel sent (the workers' too: ipykernel forwards its file descriptors 1 and 2) is
    free of TensorFlow's and CUDA's start-up lines."""
    notebook, _ = executed
    outputs = [output for cell in code_cells(notebook) for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    streams = [output.text for output in outputs if output.output_type == "stream"]
    assert any("trial 0 COMPLETE" in text for text in streams), streams
    for text in streams:
        assert not [word for word in NOISE if word in text.lower()], text


def test_kernel_interrupt_stops_the_sweep_like_ctrl_c(tmp_path, data_dir, stores):
    """The interrupt button mid-trial: the cell ends in SweepInterrupted, the trial is FAIL, its run and the
    parent run KILLED, no worker outlives the cell, and the kernel still runs code."""
    path = write_sweep(tmp_path, study__name="interrupted", study__n_trials=1, data__subset=3000,
                       data__test_subset=300, data__data_dir=str(data_dir), search_space__epochs=40,
                       study__storage=stores["storage"], tracking__tracking_uri=stores["tracking_uri"])
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path), env=kernel_env())
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=120)
        cell = client.execute(f"from pipeline import Sweep\nSweep.from_file({str(path)!r}).run()")
        trial = wait_for_training_trial(stores["storage"], "interrupted")
        manager.interrupt_kernel()
        reply = reply_to(client, cell)
        assert reply["status"] == "error" and reply["ename"] == "SweepInterrupted", reply
        assert f"trial {trial.number} was marked FAIL" in reply["evalue"]
        study = optuna.load_study(study_name="interrupted", storage=stores["storage"])
        assert study.trials[trial.number].state == TrialState.FAIL
        runs = mlflow.MlflowClient(stores["tracking_uri"])
        assert runs.get_run(trial.user_attrs[keys.RUN_ID]).info.status == "KILLED"
        assert runs.get_run(study.user_attrs[keys.PARENT_RUN_ID]).info.status == "KILLED"
        assert kernel_children(manager.provisioner.process.pid) == []
        assert client.execute_interactive("1 + 1", timeout=60)["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def wait_for_training_trial(storage: str, name: str, seconds: float = 120) -> optuna.trial.FrozenTrial:
    """The study's RUNNING trial once it has its MLflow run and has reported an epoch: mid-training."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            running = [t for t in study.get_trials(states=(TrialState.RUNNING,))
                       if keys.RUN_ID in t.user_attrs and t.intermediate_values]
            if running:
                return running[0]
        except (KeyError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
            pass  # the study, or the storage's tables, not created yet
        time.sleep(0.5)
    pytest.fail(f"no trial of study '{name}' was training after {seconds} s")


def reply_to(client, msg_id: str, seconds: float = 120) -> dict:
    """The content of the kernel's execute reply to `msg_id`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = client.get_shell_msg(timeout=deadline - time.monotonic())
        if message["parent_header"].get("msg_id") == msg_id:
            return message["content"]
    pytest.fail(f"the kernel did not answer within {seconds} s")


def kernel_children(kernel_pid: int) -> list[str]:
    """The command lines of the kernel's live child processes, from /proc; multiprocessing's resource
    tracker is left out (each process that spawns starts one, and it lives as long as the kernel)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue  # the process ended while we read it
        if int(parent) == kernel_pid and state != "Z" and "resource_tracker" not in command:
            found.append(command)
    return found
