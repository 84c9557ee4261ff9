"""Helper processes (mlflow servers) started in their own process group, so stopping one stops all of
its children too: MLflow 3's server runs uvicorn and job consumers that outlive a plain terminate()."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


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
