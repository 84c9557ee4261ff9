"""Processes: helper servers (mlflow, optuna-dashboard) on loopback ports, a command replacing itself,
and a Ctrl-C that cannot be lost.

Each server starts in its own process group, so stopping it stops all of its children too: MLflow 3's
server runs uvicorn and job consumers that outlive a plain terminate().
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Iterator, NoReturn

from pipeline import stores
from pipeline.errors import TrackingError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_CTRL_C = threading.Event()


@contextlib.contextmanager
def ctrl_c_remembered() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt as usual and is also remembered: Python drops a KeyboardInterrupt
    that lands in a finalizer or weakref callback ("Exception ignored in ..."), and the sweep would then
    run on. `raise_if_ctrl_c` re-raises it at the next safe point (the end of an epoch, the next trial)."""
    def on_sigint(signum, frame):
        _CTRL_C.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _CTRL_C.clear()


def raise_if_ctrl_c() -> None:
    if _CTRL_C.is_set():
        raise KeyboardInterrupt


def replace_process() -> NoReturn:
    """Run this process's own command line again in place of it (exec: same pid, fresh memory)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def start_group(command: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command, start_new_session=True, **kwargs)


def stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the whole group, wait, then SIGKILL whatever of it is left."""
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_for_http(url: str, process: subprocess.Popen, seconds: float = 120) -> bytes:
    """The body of the first successful GET of url; TrackingError if the process dies or time runs out."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise TrackingError(f"the server for {url} exited with status {process.returncode}")
        try:
            return urllib.request.urlopen(url, timeout=3).read()
        except OSError:
            time.sleep(0.5)
    raise TrackingError(f"{url} did not answer within {seconds:.0f} s")


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, *options: str) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port, stopped (with its children) on exit."""
    port = free_port()
    server = start_group([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
                          "--host", "127.0.0.1", "--port", str(port), *options],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", server)
        yield uri
    finally:
        stop_group(server)


@contextlib.contextmanager
def shared_tracking_server(tracking_uri: str) -> Iterator[str]:
    """Several workers must not write one SQLite file at once: serve it through one local mlflow server.

    The server (one process, on loopback) serializes the writes; a server URI passes through unchanged.
    """
    if not stores.is_sqlite(tracking_uri):
        yield tracking_uri
        return
    with mlflow_server(tracking_uri, "--workers", "1", "--default-artifact-root",
                       stores.artifact_root(tracking_uri)) as uri:
        yield uri
