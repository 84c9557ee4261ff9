"""`sweep storage-proxy`: Optuna's gRPC storage proxy in front of a database server, in the foreground."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import socket
import sys
import tempfile
from typing import IO, Iterator

import grpc
import optuna
# Private: Optuna's public run_grpc_proxy_server binds, starts and blocks in one call, so a "listening" line could
# only be printed before the bind (wrong when it fails) and a bind failure escapes as a traceback. make_server is
# its first step (bound, not started); the proxy tests run it, so an Optuna release that moves it fails them.
from optuna.storages._grpc.server import make_server

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
    server = _bound_server(backend, host, port)
    joined = socket.gethostname() if host in ("0.0.0.0", "::") else host
    # Both stop signals, set here: a process started with Ctrl-C ignored (as by a parent that ignored it) would
    # otherwise not stop on it, and Python's own handler covers SIGINT only.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    errors = _ErrorLines()
    logging.getLogger("grpc").addHandler(errors)
    try:
        server.start()
        print(f"Storage proxy for {stores.printable(url)} listening on {_address(host, port)}; machines pass "
              f"--storage {stores.PROXY_PREFIX}{_address(joined, port)}  (Ctrl-C to stop)", flush=True)
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(grace=None)
        logging.getLogger("grpc").removeHandler(errors)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _address(host: str, port: int) -> str:
    """HOST:PORT as a URL names it: an IPv6 address in brackets (`[::1]:13000`), where `::1:13000` is no address."""
    return f"{stores.bracketed(host)}:{port}"


def _bound_server(backend: optuna.storages.BaseStorage, host: str, port: int) -> grpc.Server:
    """Optuna's proxy server on host:port, bound but not started; a bind that fails is one line naming why, not
    gRPC's RuntimeError ("Failed to bind") after a log line of its own."""
    with _fd2_caught() as logged:
        try:
            return make_server(backend, stores.bracketed(host), port)
        except RuntimeError:
            logged.seek(0)
            why = re.search(r"Error in bind for address '[^']*': ([^)\n]*)", logged.read())
    raise BadInputError(f"--host {host} --port {port}: the storage proxy cannot listen on {_address(host, port)}"
                        f"{f' ({why.group(1)})' if why else ''}; pass another --host or --port")


@contextlib.contextmanager
def _fd2_caught() -> Iterator[IO[str]]:
    """What is written to file descriptor 2 meanwhile, kept in a file: gRPC's C core logs why a bind failed there,
    past Python's sys.stderr, and a failed command prints one line."""
    saved = os.dup(2)
    with tempfile.TemporaryFile("w+") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield caught
        finally:
            os.dup2(saved, 2)
            os.close(saved)


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
    """Ctrl-C, and SIGTERM (docker stop, Kubernetes, systemd), end the server."""
    raise KeyboardInterrupt


def _check_port(host: str, port: int) -> None:
    """gRPC binds with SO_REUSEPORT: a second proxy on a port already taken would start and share it silently.
    A host that is not this machine's is named as such, not as a port taken."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise BadInputError(f"--host {host}: no such host ({exc.strerror}); pass a name or address of this machine, "
                            "e.g. 0.0.0.0 (every network) or 127.0.0.1 (this machine only)") from None
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port some earlier server left in TIME_WAIT
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise BadInputError(f"--host {host}: not an address of this machine ({exc.strerror}); pass one of "
                                    "its own, e.g. 0.0.0.0 (every network) or 127.0.0.1 (this machine only)") from None
            raise BadInputError(f"port {port} on {host} is not available ({exc.strerror}); pass --port") from None
