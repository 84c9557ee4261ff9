"""Processes: helper servers (mlflow, optuna-dashboard) on loopback ports, stop signals that cannot be
lost, and workers that do not outlive their supervisor.

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
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from pipeline import stores
from pipeline.errors import TrackingError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StopRequest:
    """SIGINT (Ctrl-C) and SIGTERM (`docker stop`, Kubernetes, systemd, batch schedulers) ask a worker to stop.

    The first signal raises KeyboardInterrupt where the program is, which ends the running trial as FAIL
    and its run as KILLED; later ones only add to the record, so clean-up is not cut short. Python drops
    a KeyboardInterrupt that lands in a finalizer or weakref callback ("Exception ignored in ..."), so
    `check` raises it again at the next safe point (the end of an epoch, before the next trial).
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._next_hook = sys.unraisablehook

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._next_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        try:
            yield self
        finally:
            sys.unraisablehook = self._next_hook
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _unraisable(self, report) -> None:
        """A stop that Python drops in a finalizer is no error to show: `check` raises it again."""
        if not (self.signal is not None and issubclass(report.exc_type, KeyboardInterrupt)):
            self._next_hook(report)

    def _on_signal(self, signum: int, frame) -> None:
        first = self.signal is None
        self.signal = signum
        if first:
            raise KeyboardInterrupt

    def check(self, *_: object) -> bool:
        """Raise KeyboardInterrupt if a stop was asked for; usable as an epoch hook (never stops by itself)."""
        if self.signal is not None:
            raise KeyboardInterrupt
        return False


def pid_alive(pid) -> bool:
    """Whether a process of this id runs on this machine (not counting this one, which asks)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def same_command(pid) -> bool:
    """Whether a process on this machine belongs to this `sweep` command: this process's own worker (asked by the
    supervisor) or its sibling (asked by a worker). The supervisor watches those itself; Linux's /proc tells, and
    elsewhere the answer is no."""
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return False
    return parent in (os.getpid(), os.getppid())


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when the process that started it dies (a SIGKILLed
    supervisor must not leave workers training on). Other systems lack the call; there a worker ends
    when its budget or its trial share is spent."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1


# MLflow 3's server starts job-consumer processes (about 245 MiB each) for features this project never uses.
SERVER_ENVIRONMENT = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_group(command: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
    """A process in a new session (its own group), with SERVER_ENVIRONMENT on top of `env` (or ours)."""
    return subprocess.Popen(command, start_new_session=True, env={**(env or os.environ), **SERVER_ENVIRONMENT},
                            **kwargs)


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
def shared_tracking_server(tracking_uri: str, workers: int) -> Iterator[str]:
    """Several workers must not write one SQLite file at once: serve it through one local mlflow server.

    The server (one process, on loopback) serializes the writes; one worker writes the file itself, and
    a server URI passes through unchanged.
    """
    if workers == 1 or not stores.is_sqlite(tracking_uri):
        yield tracking_uri
        return
    with mlflow_server(tracking_uri, "--workers", "1", "--default-artifact-root",
                       stores.artifact_root(tracking_uri)) as uri:
        yield uri
