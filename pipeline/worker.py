"""A worker process: the only place trials run.

The supervisor (`sweep run`) starts each worker with a WorkerSpec and one end of a pipe. A worker loads
and validates the sweep's data once, says Ready, and waits: the supervisor opens the stores only once
the data is known to be good, then answers with Go (the parent run, the tracking URI to log to). The
worker then runs trials until the study's budget is spent, its share of `trials_per_process` is run, a
stop signal arrives, or something stops the sweep, and says which in its last message. As the last trial
of its share begins it says LastTrial, and the supervisor starts its successor, which loads while that
trial trains and waits for its Go until this worker has ended.

This module is the protocol and the process's entry point; it imports nothing heavy, so `sweep run` can
start its workers first thing and let them load TensorFlow, MLflow, Optuna and the data while it loads
its own. The worker's body is pipeline.trial_loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass

from pipeline.config import SweepConfig
from pipeline.errors import SweepError
from pipeline.processes import StopRequest, die_with_parent
from pipeline.tensorflow_setup import load_tensorflow


@dataclass(frozen=True)
class WorkerSpec:
    config: SweepConfig
    number: int  # 0, 1, ... in the order the supervisor started them; seeds the worker's sampler
    threads: int  # TensorFlow CPU threads for this worker
    verbose: bool  # show TensorFlow's own start-up lines
    workers: int  # how many workers hold the data at once (for the memory check)


@dataclass(frozen=True)
class Ready:
    """The data loaded and passed its checks: where from (as stores record it) and its digest; with a builder,
    what the study records of it (pipeline.builders.record), once it has passed its start-time check."""

    data_dir: str | None
    digest: str
    builder: dict | None = None


@dataclass(frozen=True)
class Go:
    parent_id: str
    tracking_uri: str
    phase: str = "search"  # search: trials of the study | confirm: the retrainings queued in its confirmation


@dataclass(frozen=True)
class LastTrial:
    """The worker has begun the last trial of its share: its successor can load TensorFlow and the data
    now, while this trial trains, instead of after it."""


@dataclass(frozen=True)
class Note:
    """A line for the user, which the supervisor prints among its progress lines (a worker waiting for
    another machine's trial says so, and why)."""

    text: str


@dataclass(frozen=True)
class Finished:
    """Why the worker's trial loop ended: 'budget' (the study's is spent), 'share' (it ran its
    trials_per_process), 'interrupted' (SIGINT or SIGTERM) or 'dismissed' (nothing was left to do)."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """Something that stops the whole sweep (too many failures, the tracking store gone, bad data)."""

    message: str
    exit_code: int


def main(spec: WorkerSpec, connection) -> None:
    """The worker process's entry point; its last message says how it ended."""
    die_with_parent()
    with StopRequest().installed() as stop:
        try:
            load_tensorflow(spec.verbose, spec.threads)  # first and quietly: what follows imports Keras
            from pipeline.trial_loop import serve  # the worker's body; the supervisor never imports it

            outcome = serve(spec, connection, stop)
        except KeyboardInterrupt:
            outcome = Finished("interrupted")
        except SweepError as exc:
            outcome = Failed(str(exc), exc.exit_code)
        # A stop signal arriving now changes nothing: the outcome is decided, only the telling is left.
        with contextlib.suppress(OSError, KeyboardInterrupt):
            connection.send(outcome)
    _exit_now()


def _exit_now() -> None:
    """End the process without the interpreter's teardown: everything is written and told (the last model is
    logged, the study and runs are committed), and unloading TensorFlow's and MLflow's modules takes ~2 s that
    the supervisor, which waits for the process to end, would spend after the sweep's last trial."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(0)
