"""`sweep storage-proxy`: Optuna's gRPC storage proxy in front of a database server, in the foreground."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import warnings

import optuna

from pipeline import stores
from pipeline.errors import BadInputError
from pipeline.storages import database, is_database_server, kind_of
from pipeline.study import storage_errors


def serve(storage: str, host: str, port: int) -> int:
    """Run a proxy in front of a database server until Ctrl-C or SIGTERM, having said where machines join it.

    Optuna's server over its cached storage, as its docs ask (a plain RDBStorage re-reads every trial).
    """
    url = stores.resolve_uri(storage, create=False)
    if not is_database_server(url):
        raise BadInputError(f"--storage {stores.printable(url)}: a storage proxy fronts a database server "
                            f"(postgresql://user@host/database), not a {kind_of(url).name}")
    if not 0 < port < 65536:
        raise BadInputError(f"--port {port}: a port is 1 to 65535")
    _check_port(host, port)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial of every machine
    with storage_errors(url):
        backend = optuna.storages.get_storage(database.open_database(url, None))
    joined = socket.gethostname() if host in ("0.0.0.0", "::") else host
    print(f"Storage proxy for {stores.printable(url)} listening on {host}:{port}; machines pass --storage "
          f"{stores.PROXY_PREFIX}{joined}:{port}  (Ctrl-C to stop)", flush=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    errors = _ErrorLines()
    logging.getLogger("grpc").addHandler(errors)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.run_grpc_proxy_server(backend, host=host, port=port)
    except KeyboardInterrupt:
        pass
    finally:
        logging.getLogger("grpc").removeHandler(errors)
        signal.signal(signal.SIGTERM, previous)
    return 0


class _ErrorLines(logging.StreamHandler):
    """What a machine's call failed on (its database gone, say), one line each on stderr: gRPC logs it with a
    traceback to a logger nobody hears, and the machine only gets "Exception calling application"."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setLevel(logging.ERROR)

    def format(self, record: logging.LogRecord) -> str:
        cause = record.exc_info[1] if record.exc_info else None
        while cause is not None and (cause.__cause__ or cause.__context__) is not None:
            cause = cause.__cause__ or cause.__context__  # Optuna's own wrapper hides what the database said
        text = f"{type(cause).__name__}: {cause}" if cause is not None else record.getMessage()
        return f"sweep: storage proxy: a machine's call failed: {text.strip().splitlines()[0][:300]}"


def _raise_interrupt(signum, frame) -> None:
    """SIGTERM (docker stop, Kubernetes, systemd) ends the server as Ctrl-C does."""
    raise KeyboardInterrupt


def _check_port(host: str, port: int) -> None:
    """gRPC binds with SO_REUSEPORT: a second proxy on a port already taken would start and share it silently."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port some earlier server left in TIME_WAIT
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BadInputError(f"port {port} on {host} is not available ({exc.strerror}); pass --port") from None
