"""`sweep ui`: the MLflow UI over a sweep's tracking store, bound to loopback unless asked otherwise."""

from __future__ import annotations

import signal
import socket
import sys

from pipeline import processes, stores, tracking
from pipeline.config import SweepConfig
from pipeline.errors import BadInputError, StudyError
from pipeline.study import load_existing_study


def serve_ui(config: SweepConfig, host: str, port: int) -> int:
    """Check the sweep has run and the port is free, print the runs view's URL, then run `mlflow ui`.

    Ctrl-C and SIGTERM both stop the server (and its children) and end the command.
    """
    load_existing_study(config.study.storage, config.study.name)  # says so, listing studies, if never run
    uri = stores.resolve_uri(config.tracking.tracking_uri, create=False)
    if not stores.is_sqlite(uri):
        raise BadInputError(f"{uri} is a tracking server already: open it in a browser")
    if not stores.sqlite_path(uri).is_file():
        raise StudyError(f"no MLflow store at {uri}; run `sweep run {config.path}` first")
    _check_port(host, port)
    tracking.connect(uri, config.experiment_name)  # tags older experiments, so the UI opens on their runs
    url = tracking.runs_url(uri, config.experiment_name, f"http://{host}:{port}")
    print(f"MLflow UI for study '{config.study.name}': {url}  (Ctrl-C to stop)", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    server = processes.start_group(command)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        processes.stop_group(server)


def _raise_interrupt(signum, frame) -> None:
    """SIGTERM ends the wait like Ctrl-C does; the `finally` above then stops the server."""
    raise KeyboardInterrupt


def _check_port(host: str, port: int) -> None:
    with socket.socket() as probe:
        # As the server itself binds: a port some earlier server left in TIME_WAIT is free, a listening one not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BadInputError(f"port {port} on {host} is not available ({exc.strerror}); pass --port") from None
