"""Comparing trials: plots as artifacts, `sweep report`, `sweep ui`, and the REST API of a real server."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import pandas as pd
import pytest

from pipeline import cli
from pipeline import stores as store_uris
from pipeline.processes import free_port, mlflow_server, start_group, stop_group, wait_for_http
from pipeline.config import load_sweep
from pipeline.data import KERAS_DATASETS
from pipeline.hyperparameters import used_names

STUDY_PLOTS = {"optimization_history", "param_importances", "parallel_coordinate", "slice"}


def api(base: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=30))


@pytest.fixture(scope="module")
def config(module_sweep):
    return load_sweep(module_sweep)


def test_report_joins_trials_with_runs_best_first(module_sweep, config, capsys):
    capsys.readouterr()
    assert cli.main(["report", str(module_sweep), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(table) == 3 and table["state"].eq("COMPLETE").all()
    assert table.loc[0, "best"] == "*" and table["best"].fillna("").eq("*").sum() == 1
    assert table["val_accuracy"].is_monotonic_decreasing
    assert set(used_names("dense", "classification")) <= set(table.columns)
    assert {"run_id", "epochs_run", "test_accuracy", "duration_s"} <= set(table.columns)
    client = mlflow.MlflowClient(store_uris.resolve_uri(config.tracking.tracking_uri))
    for row in table.itertuples():
        run = client.get_run(row.run_id)
        assert run.data.tags["sweep.trial_number"] == str(row.trial)
        assert run.data.metrics["test_accuracy"] == pytest.approx(row.test_accuracy)


def test_report_markdown_to_a_file(module_sweep, tmp_path):
    out = tmp_path / "report.md"
    out.write_text("| best | trial | state |\n| --- | --- | --- |\n")  # an earlier report, replaced
    assert cli.main(["report", str(module_sweep), "--format", "markdown", "--out", str(out)]) == 0
    table, _, conclusions = out.read_text().partition("\n\n")
    lines = table.splitlines()
    assert lines[0].startswith("| best | trial | state |") and lines[1].startswith("| --- |")
    assert len(lines) == 2 + 3 and lines[2].startswith("| * |")
    assert "| latency_ms | params_count | model_mb |" in lines[0], "what each trial's model costs"
    assert conclusions.startswith("verdict: too early to tell: 3 COMPLETE trial(s)")


def test_report_on_a_study_that_never_ran_lists_the_ones_that_did(config, capsys):
    assert cli.main(["report", "--study", "never-ran", "--storage", config.study.storage]) == 1
    assert "no study named 'never-ran'" in capsys.readouterr().err


def test_ui_refuses_an_occupied_port_and_a_sweep_that_never_ran(module_sweep, config, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["ui", str(module_sweep), "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is not available" in capsys.readouterr().err
    assert cli.main(["ui", str(module_sweep), "--storage", f"sqlite:///{tmp_path}/none.db"]) == 1
    assert "run `sweep run` first" in capsys.readouterr().err


@pytest.mark.slow
def test_ui_serves_the_runs_view_it_prints_and_sigterm_ends_it(module_sweep, config):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "ui", str(module_sweep), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        experiment = mlflow.MlflowClient(store_uris.resolve_uri(config.tracking.tracking_uri)).get_experiment_by_name(
            config.experiment_name)
        assert f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs" in line
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development", "opens on its runs"
        wait_for_http(f"http://127.0.0.1:{port}/health", process)
        process.terminate()  # SIGTERM, as a process manager stops it
        assert process.wait(timeout=60) == 0
        with pytest.raises(ConnectionRefusedError):  # the server is gone with it
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        if process.poll() is None:
            process.kill()


BASIC_AUTH_SERVER = """
import base64, http.server, sys
EXPECTED = "Basic " + base64.b64encode(b"bob:SECRET@PW").decode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/health" and self.headers.get("Authorization") == EXPECTED
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"OK" if ok else b"")
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_a_tracking_server_behind_basic_auth_is_reached_with_the_url_s_user_and_password():
    """`--tracking-uri http://user:password@host` (MLflow's client sends them as basic auth): the reachability
    check sends them the same way, so a server that is up is not called unreachable."""
    from pipeline import tracking
    from pipeline.errors import TrackingError

    port = free_port()
    server = start_group([sys.executable, "-c", BASIC_AUTH_SERVER, str(port)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # until it listens (or it died)
            assert server.poll() is None, "the test server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        tracking.check_reachable(f"http://bob:SECRET%40PW@127.0.0.1:{port}")
        with pytest.raises(TrackingError, match="401") as refused:
            tracking.check_reachable(f"http://bob:WRONG@127.0.0.1:{port}")
        assert "WRONG" not in str(refused.value) and f"http://127.0.0.1:{port} answered" in str(refused.value)
    finally:
        stop_group(server)


@pytest.mark.slow
def test_a_real_mlflow_server_lists_every_trial_comparably(config):
    """Through the REST API, as the UI's compare view sees the store."""
    with mlflow_server(store_uris.resolve_uri(config.tracking.tracking_uri), "--workers", "1") as base:
        experiment = api(base, f"experiments/get-by-name?experiment_name={config.experiment_name}")["experiment"]
        runs = api(base, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        (parent,) = [r for r, t in zip(runs, tags) if t.get("sweep.role") == "parent"]
        children = [r for r, t in zip(runs, tags) if t.get("sweep.role") == "trial"]
        assert len(children) == 3
        assert all(t["mlflow.parentRunId"] == parent["info"]["run_id"] for t in tags if t.get("sweep.role") == "trial")
        param_keys = {frozenset(p["key"] for p in r["data"]["params"]) for r in children}
        metric_keys = {frozenset(m["key"] for m in r["data"]["metrics"]) for r in children}
        assert param_keys == {frozenset(used_names("dense", "classification"))} and len(metric_keys) == 1
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "test_accuracy", "test_loss"} <= set(*metric_keys)
        for child in children:
            run_id = child["info"]["run_id"]
            epochs = int({p["key"]: p["value"] for p in child["data"]["params"]}["epochs"])
            history = api(base, f"metrics/get-history?run_id={run_id}&metric_key=val_accuracy")["metrics"]
            assert sorted(int(m["step"]) for m in history) == list(range(1, epochs + 1))
            files = {f["path"] for f in api(base, f"artifacts/list?run_id={run_id}&path=plots")["files"]}
            assert files == {"plots/learning_curves.png", "plots/confusion_matrix.png",
                             "plots/classification_report.json"}
        listing = api(base, f"artifacts/list?run_id={parent['info']['run_id']}&path=plots")
        parent_files = {f["path"] for f in listing["files"]}
        assert parent_files == {f"plots/{name}.png" for name in (*STUDY_PLOTS, "best_so_far")}


def test_per_trial_report_has_every_class(config):
    client = mlflow.MlflowClient(store_uris.resolve_uri(config.tracking.tracking_uri))
    experiment = client.get_experiment_by_name(config.experiment_name)
    for run in client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'trial'"):
        report = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/plots/classification_report.json")
        assert set(KERAS_DATASETS["fashion_mnist"].class_names) <= set(report)
        assert report["accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])
        assert {"precision", "recall", "f1-score"} <= set(report["Coat"])


@pytest.mark.slow
def test_optuna_dashboard_reads_the_default_journal_storage(config):
    """As the README says: `optuna-dashboard mlruns/optuna.journal`, the file's path alone."""
    port = free_port()
    storage = str(store_uris.journal_path(config.study.storage))
    dashboard = start_group(["optuna-dashboard", storage, "--host", "127.0.0.1", "--port", str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ})
    try:
        studies = json.loads(wait_for_http(f"http://127.0.0.1:{port}/api/studies", dashboard))
        (study,) = [s for s in studies["study_summaries"] if s["study_name"] == config.study.name]
        detail = json.loads(wait_for_http(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", dashboard))
        assert len(detail["trials"]) == 3
    finally:
        stop_group(dashboard)


def test_report_leads_with_the_results_and_fits_the_terminal(module_sweep, capsys, monkeypatch):
    """The default view: trial, state, validation and test first; parameters no trial varied on one line
    above; no line wider than the terminal, saying which columns it left out and how to see them."""
    monkeypatch.setenv("COLUMNS", "80")  # what shutil.get_terminal_size reads first
    capsys.readouterr()
    assert cli.main(["report", str(module_sweep)]) == 0
    text = capsys.readouterr().out
    table, _, conclusions = text.partition("\n\n")
    assert all(len(line) <= 80 for line in table.splitlines()), table
    fixed, header = table.split("\nbest")[0], "best" + table.split("\nbest")[1].splitlines()[0]
    assert fixed.startswith("Same in every trial: ") and "batch_size=64" in fixed and "jit_compile=False" in fixed
    assert header.split()[:6] == ["best", "trial", "state", "val_accuracy", "test_accuracy", "test_loss"]
    assert "batch_size" not in header.split(), "a parameter no trial varied is said once, above"
    assert "more column(s) not shown: " in table and "run_id" in table.split("not shown: ")[1]
    assert "`--format csv` or `--format markdown` gives them all" in " ".join(table.split())
    assert conclusions.startswith("verdict: too early to tell")
    assert all(len(line) <= 80 for line in conclusions.splitlines()), "the verdict's sentences are wrapped too"
    monkeypatch.setenv("COLUMNS", "20")
    assert cli.main(["report", str(module_sweep)]) == 0
    narrow = capsys.readouterr().out.split("\n\n")[0].replace(",", " ").split()
    assert "batch_size=64" in narrow and "jit_compile=False" in narrow, "never broken inside a word"
    monkeypatch.setenv("COLUMNS", "1000")
    assert cli.main(["report", str(module_sweep)]) == 0
    wide = capsys.readouterr().out
    assert "not shown" not in wide and "run_id" in wide.split("\n\n")[0]
    monkeypatch.delenv("COLUMNS")
    piped = subprocess.run([sys.executable, "-m", "pipeline.cli", "report", str(module_sweep)], capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 0 and "not shown" not in piped.stdout, "a pipe or a file gets every column"


def test_report_csv_keeps_every_column_results_first(module_sweep, capsys):
    capsys.readouterr()
    assert cli.main(["report", str(module_sweep), "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert header[:6] == ["best", "trial", "state", "val_accuracy", "test_accuracy", "test_loss"]
    assert {"batch_size", "jit_compile", "run_id", "latency_ms"} <= set(header), "the full table"


def test_the_verdict_says_plainly_when_the_noise_is_unknown():
    from pipeline.verdict import Noise, describe, judge

    unknown = Noise(None, "no configuration was trained more than once")
    flat = judge([0.8] + [0.7] * 19, unknown)
    assert flat.text == ("the best has not improved at all in the last 19 trials: more trials of this space are "
                         "unlikely to help (the seed noise is unknown; `sweep confirm` measures it)")
    rising = judge([0.5 + 0.01 * i for i in range(12)], unknown)
    assert rising.text.startswith("still improving: the best rose 10.00 points in the last 10 trials, last 0 trial(s) "
                                  "ago; the seed noise is unknown, so some of that may be luck")
    assert "(unknown)" not in flat.text + rising.text
    assert ("seed noise (sd between seeds of one configuration): unknown (no configuration was trained more than "
            "once; `sweep confirm` measures it)") in describe(flat)


def test_compare_warns_when_the_studies_ran_on_different_data(module_sweep, config, tmp_path, capsys):
    """The same study twice compares quietly; a copy that records other data gets one warning line, and the
    comparison all the same."""
    import optuna
    import yaml

    from pipeline.study import optuna_storage

    paths = []
    for name in ("same", "other"):
        raw = yaml.safe_load(module_sweep.read_text())
        raw["study"]["storage"] = f"sqlite:///{tmp_path}/{name}.db"
        optuna.copy_study(from_study_name=config.study.name, from_storage=optuna_storage(config.study.storage),
                          to_storage=raw["study"]["storage"])
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert cli.main(["compare", str(module_sweep), str(paths[0])]) == 0
    assert capsys.readouterr().err == ""
    other = optuna.load_study(study_name=config.study.name, storage=f"sqlite:///{tmp_path}/other.db")
    other.set_user_attr("data", {"data_dir": "elsewhere", "digest": "0123456789abcdef"})
    assert cli.main(["compare", str(paths[0]), str(paths[1])]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("sweep: warning: the two studies ran on different data (") and err.count("\n") == 1, err
    assert "the data in elsewhere (digest 0123456789abcdef)" in err and "compared anyway" in err
    assert "differs by +0.0000" in out, "compared all the same"


def test_report_on_a_study_with_no_trials_yet(tmp_path, capsys):
    """A study created by a run stopped before its first trial: a sentence, not pandas' "Empty DataFrame"."""
    import optuna

    from conftest import write_sweep

    storage = f"sqlite:///{tmp_path}/optuna.db"
    path = write_sweep(tmp_path, study__storage=storage, tracking__tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    optuna.create_study(study_name="fashion-mnist-smoke", storage=storage)
    capsys.readouterr()
    assert cli.main(["report", str(path)]) == 0
    assert capsys.readouterr().out.startswith("Study 'fashion-mnist-smoke' has no trials yet.\n\nverdict: too early")
    assert cli.main(["report", str(path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("best,trial,state,")


def test_report_out_takes_its_format_from_the_suffix_and_replaces_only_an_earlier_report(module_sweep, tmp_path,
                                                                                        capsys):
    """`--out data.csv` once overwrote the sweep's own training table: an existing file is replaced only when its
    first line is one a report writes (any format); anything else is refused and left as it is."""
    data, readme = tmp_path / "data.csv", tmp_path / "README.md"
    data.write_text("label,pixel_0\n3,0\n")
    readme.write_text("# Notes\n")
    for victim in (data, readme):
        assert cli.main(["report", str(module_sweep), "--out", str(victim)]) == 2
        err = capsys.readouterr().err
        assert f"--out {victim}: exists and is a file that is not a report" in err and "left as it is" in err, err
    assert (data.read_text(), readme.read_text()) == ("label,pixel_0\n3,0\n", "# Notes\n")

    firsts = {"trials.csv": ("best,trial,state,",), "trials.md": ("| best | trial | state |",),
              "trials.txt": ("Same in every trial:", "best  trial    state")}  # a text table, its fixed params first
    for name, first in firsts.items():
        out = tmp_path / name
        for _ in range(2):  # the second replaces the first
            assert cli.main(["report", str(module_sweep), "--out", str(out)]) == 0
            assert out.read_text().startswith(first), (name, out.read_text()[:200])
    assert cli.main(["report", str(module_sweep), "--format", "csv", "--out", str(tmp_path / "trials.md")]) == 0
    assert (tmp_path / "trials.md").read_text().startswith("best,trial,state,"), "--format wins over the suffix"


def test_a_report_of_a_study_without_trials_may_be_replaced(tmp_path):
    import optuna

    from conftest import write_sweep

    storage = f"sqlite:///{tmp_path}/optuna.db"
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_sweep(tmp_path, study__storage=storage, tracking__tracking_uri=tracking_uri)
    optuna.create_study(study_name="fashion-mnist-smoke", storage=storage)
    mlflow.MlflowClient(tracking_uri).search_experiments()  # the tracking store a run stopped so early leaves
    out = tmp_path / "none.txt"
    for _ in range(2):
        assert cli.main(["report", str(path), "--out", str(out)]) == 0
    assert out.read_text().startswith("Study 'fashion-mnist-smoke' has no trials yet.\n")
