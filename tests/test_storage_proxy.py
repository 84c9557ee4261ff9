"""`storage: grpc://host:port`: sweeps through a real `sweep storage-proxy` process in front of a fresh PostgreSQL
database, dead machines found through it by heartbeat, and what it refuses."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import types
import warnings
from typing import Iterator

import optuna
import psycopg
import pytest
from optuna.trial import TrialState

from pipeline import cli, keys
from pipeline.errors import BadInputError
from pipeline.processes import free_port
from pipeline.storages import proxy_server
from pipeline.study import is_surplus, optuna_storage

from conftest import POSTGRES, ROOT, write_sweep

pytestmark = pytest.mark.slow


@pytest.fixture
def database(new_database) -> str:
    return new_database("proxy")


@contextlib.contextmanager
def running_proxy(database: str, stop: int = signal.SIGINT, host: str = "127.0.0.1", ctrl_c_ignored: bool = False
                  ) -> Iterator[types.SimpleNamespace]:
    """`sweep storage-proxy` in front of the database, as a real process on a free loopback port, once it answers;
    stopped by `stop`, it must end cleanly (its stderr is then in `.err`). Its line comes once it listens: a
    connection made right after it is accepted."""
    port = free_port()
    command = [sys.executable, "-m", "pipeline.cli", "storage-proxy", "--storage", database, "--host", host,
               "--port", str(port)]
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ctrl_c_ignored else None  # as inherited
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=ignore)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    proxy = types.SimpleNamespace(url=f"grpc://{address}", err="")
    try:
        said = server.stdout.readline()  # its one line, once it has opened the database and listens
        assert f"listening on {address}; machines pass --storage {proxy.url} " in said, (
            said + server.stderr.read() if server.poll() is not None else said)
        socket.create_connection((host, port), timeout=10).close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.GrpcStorageProxy(host=address.rpartition(":")[0], port=port).wait_server_ready(timeout=60)
        yield proxy
    finally:
        server.send_signal(stop)
        _, proxy.err = server.communicate(timeout=60)
    assert server.returncode == 0, proxy.err[-3000:]
    assert "Traceback" not in proxy.err, proxy.err[-3000:]


@pytest.fixture
def proxy(database):
    with running_proxy(database) as running:
        yield running.url


def test_two_workers_run_a_sweep_through_the_proxy_into_postgres(tmp_path, data_dir, database, proxy):
    """--workers 2 takes a proxy like a database server; the trials land in PostgreSQL, each with the heartbeats
    its worker sent through the proxy."""
    path = write_sweep(tmp_path, study__n_trials=3, data__subset=600, data__test_subset=200,
                       data__data_dir=str(data_dir), study__storage=proxy,
                       tracking__tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert cli.main(["run", str(path), "--workers", "2", "--no-progress"]) == 0
    trials = optuna.load_study(study_name="fashion-mnist-smoke", storage=database).trials  # the database itself
    # Two workers asking at once can overshoot the budget by one: that trial is refused before it trains.
    trials = [t for t in trials if not is_surplus(t)]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(keys.HEARTBEAT in t.system_attrs and keys.RUN_ID in t.user_attrs for t in trials)
    with psycopg.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone() == (3,)


def test_only_a_trial_whose_heartbeat_is_older_than_the_grace_is_stale(proxy):
    storage = optuna_storage(proxy)
    study = optuna.create_study(study_name="probe", storage=storage)
    quiet, old, fresh = (storage.create_new_trial(study._study_id) for _ in range(3))
    storage.set_trial_system_attr(old, keys.HEARTBEAT, time.time() - 3600)
    storage.record_heartbeat(fresh)
    assert storage.get_heartbeat_interval() == 20
    assert storage._get_stale_trial_ids(study._study_id) == [old]


def test_a_trial_whose_machine_died_as_the_study_s_last_is_run_again_through_the_proxy(tmp_path, data_dir, proxy,
                                                                                       capsys):
    """Another machine died in the study's last trial: its heartbeats through the proxy stopped an hour ago. A
    rerun fails that trial and completes the study."""
    path = write_sweep(tmp_path, study__n_trials=1, data__subset=600, data__test_subset=200,
                       data__data_dir=str(data_dir), study__storage=proxy,
                       tracking__tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert cli.main(["run", str(path), "--no-progress"]) == 0
    study = optuna.load_study(study_name="fashion-mnist-smoke", storage=optuna_storage(proxy))
    dead = study._storage.create_new_trial(study._study_id)  # the other machine's trial, RUNNING
    study._storage.set_trial_user_attr(dead, keys.HOST, "another-machine")
    study._storage.set_trial_user_attr(dead, keys.PID, 4242)
    study._storage.set_trial_system_attr(dead, keys.HEARTBEAT, time.time() - 3600)
    capsys.readouterr()
    assert cli.main(["run", str(path), "--no-progress", "--n-trials", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 finished trials (1 run now)" in out, out
    trials = optuna.load_study(study_name="fashion-mnist-smoke", storage=optuna_storage(proxy)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


def test_a_second_proxy_on_a_taken_port_is_refused(database, proxy, capsys):
    """gRPC would share the port silently (SO_REUSEPORT) and split the machines between two proxies."""
    port = proxy.rsplit(":", 1)[1]
    assert cli.main(["storage-proxy", "--storage", database, "--port", port]) == 2
    assert f"port {port} on 127.0.0.1 is not available" in capsys.readouterr().err


def test_a_proxy_whose_database_went_away_says_so_on_both_ends(database, capsys):
    """The machine gets one line naming the proxy; the proxy's own output says what the database said. SIGTERM
    (docker stop, Kubernetes) stops the proxy cleanly."""
    with running_proxy(database, stop=signal.SIGTERM) as proxy:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {database.rsplit('/', 1)[1]} WITH (FORCE)")
        assert cli.main(["report", "--study", "s", "--storage", proxy.url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sweep: error: the storage proxy {proxy.url} could not serve the study: "), err
    assert err.count("\n") == 1 and "its database is up" in err, err
    assert "sweep: storage proxy: a machine's call failed: " in proxy.err, proxy.err


def test_a_proxy_on_an_ipv6_address_prints_a_url_that_machines_take(database):
    """`--host ::1`: gRPC binds [::1]:PORT (`::1:PORT` is no address to it), and machines join with the printed
    grpc://[::1]:PORT; the study they make is in the database."""
    with running_proxy(database, host="::1") as proxy:
        optuna.create_study(study_name="through-ipv6", storage=optuna_storage(proxy.url))
    assert optuna.study.get_all_study_names(storage=database) == ["through-ipv6"]


def test_a_bind_gRPC_refuses_is_one_line_naming_the_address_and_why(capfd):
    """A port the probe let through but gRPC cannot bind (taken meanwhile, say): our line, not gRPC's traceback,
    and not the line its C core logs on file descriptor 2."""
    with socket.socket(socket.AF_INET6) as holder:
        holder.bind(("::1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(BadInputError) as refused:
            proxy_server._bound_server(optuna.storages.InMemoryStorage(), "::1", port)
    assert str(refused.value) == (f"--host ::1 --port {port}: the storage proxy cannot listen on [::1]:{port} "
                                  "(Address already in use); pass another --host or --port")
    assert capfd.readouterr().err == ""



def test_ctrl_c_stops_a_proxy_started_with_ctrl_c_ignored(database):
    """A child inherits an ignored SIGINT (a parent that ignored Ctrl-C, `nohup`, a test runner that did):
    Python then installs no handler of its own, and the proxy would run on. It sets its own."""
    with running_proxy(database, ctrl_c_ignored=True):
        pass  # leaving stops it with Ctrl-C: it must end cleanly
