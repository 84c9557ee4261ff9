"""The supervisor's worker processes: started, released with Go, replaced when spent, told to stop.

Each worker is a fresh interpreter (spawn) with one end of a pipe; it says Ready once its data passed its
checks, and its last word says how it ended (pipeline.worker). The pool waits on the pipes and on the
processes themselves, so it notices a worker that died without a word (killed, out of memory). Like
pipeline.worker it imports nothing heavy: `sweep run` starts its workers before it loads MLflow and Optuna.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from pipeline.config import SweepConfig
from pipeline.errors import SweepError
from pipeline.worker import Failed, Finished, Go, LastTrial, Note, Ready, WorkerSpec, main as worker_main

if TYPE_CHECKING:
    from pipeline.progress import Progress

STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
WORKER_NAME = "sweep-worker-"  # + its number: the process's name, which a worker's own imports can see


@dataclass(eq=False)  # compared and hashed by identity: two workers are never "equal"
class _Worker:
    number: int
    process: multiprocessing.process.BaseProcess
    connection: multiprocessing.connection.Connection
    ready: Ready | None = None
    last: Finished | Failed | None = None  # the worker's last word, once it has said it
    held: bool = False  # a successor started early: its Go waits until its predecessor has ended
    dismissed: bool = False  # a successor that turned out not to be needed: answered None once Ready
    successor: "_Worker | None" = None


@dataclass
class WorkerPool:
    """The supervisor's worker processes: started, released with Go, replaced, and told to stop."""

    config: SweepConfig
    size: int  # how many workers run at once
    verbose: bool
    workers: list[_Worker] = field(default_factory=list)
    go: Go | None = None
    stopped_by: int | None = None  # the signal that stopped the sweep
    failure: Failed | None = None  # the first failure, which stops the sweep
    started: int = 0
    pids: set[int] = field(default_factory=set)  # every worker this pool started, to tell its trials from others'
    notes: list[str] = field(default_factory=list)  # the workers' Notes, not yet printed
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or locks

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        """Whatever happened, no worker outlives the command."""
        for worker in self.workers:
            worker.process.join(timeout=60 if exc[0] is None else 5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()

    def start_all(self) -> "WorkerPool":
        for _ in range(self.size):
            self.start()
        return self

    @property
    def threads(self) -> int:
        """TensorFlow threads per worker: the sweep file's, or the cores shared out."""
        return self.config.study.threads or max(1, (os.cpu_count() or 1) // self.size)

    def start(self, held: bool = False) -> _Worker:
        """A fresh worker process. It starts with Ctrl-C ignored (an ignored signal stays ignored across
        exec), so a Ctrl-C while it imports prints no traceback; it takes the signal over once it runs."""
        ours, theirs = self.context.Pipe()
        spec = WorkerSpec(self.config, self.started, self.threads, self.verbose, self.size)
        process = self.context.Process(target=worker_main, args=(spec, theirs), name=f"{WORKER_NAME}{self.started}")
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, handler)
        theirs.close()
        self.pids.add(process.pid)
        worker = _Worker(self.started, process, ours, held=held)
        self.workers.append(worker)
        self.started += 1
        return worker

    @contextlib.contextmanager
    def forwarding_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM reach the workers, which end their trials cleanly; the supervisor notes which."""
        def forward(signum, frame):
            self.stopped_by = self.stopped_by or signum
            for worker in self.workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signum)

        previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def wait_until_ready(self) -> Ready:
        """Until every worker has loaded its data; the first one that cannot stops the sweep."""
        while not all(worker.ready for worker in self.workers):
            for worker in self._events(timeout=1.0):
                if worker.last is not None or not worker.process.is_alive():
                    self._stop_all(signal.SIGTERM)
                    if self.stopped_by:  # it ended as the stop signal told it to: no failure of its own
                        raise KeyboardInterrupt
                    failure = self._failure_of(worker)
                    raise SweepError(failure.message, failure.exit_code)
            if self.stopped_by:
                raise KeyboardInterrupt
        return self.workers[0].ready

    def release(self, go: Go | None) -> None:
        """Send every ready worker its Go (None dismisses them: nothing to do); later ones get it at once."""
        self.go = go
        for worker in self.workers:
            if worker.ready and not worker.held and worker.process.is_alive():
                with contextlib.suppress(OSError):
                    worker.connection.send(go)

    def watch(self, progress: "Progress", budget_spent: Callable[[], bool],
              fail_dead_trials: Callable[[], object]) -> Failed | None:
        """Until every worker has ended: progress lines, fresh workers for spent ones; the first failure,
        which stops the others (their running trials end FAIL, as on Ctrl-C)."""
        while self.workers:
            for worker in self._events(timeout=1.0):
                if isinstance(worker.last, Failed):
                    self._fail(worker.last)
            progress.update()
            for note in self.notes:
                progress.write(note)
            self.notes.clear()
            for worker in [w for w in self.workers if not w.process.is_alive()]:
                self._retire(worker, progress, budget_spent, fail_dead_trials)
        progress.update()
        return self.failure

    def _retire(self, worker: _Worker, progress: "Progress", budget_spent: Callable[[], bool],
                fail_dead_trials: Callable[[], object]) -> None:
        """A worker has exited: its successor (started during its last trial, or now) takes over if it ran
        its share and trials remain; a death stops the sweep."""
        worker.process.join()
        self.workers.remove(worker)
        if worker.last is None:
            fail_dead_trials()  # its trial, RUNNING with a dead pid
            self._fail(self._failure_of(worker))
        spent = isinstance(worker.last, Finished) and worker.last.reason == "share"
        if spent and not (self.stopped_by or self.failure or budget_spent()):
            progress.write(f"worker {worker.number} ran its {self.config.study.trials_per_process} trials "
                           "(study.trials_per_process); a fresh worker continues, with fresh memory")
            self._answer(worker.successor or self.start(held=True), self.go)
        elif worker.successor is not None:
            self._answer(worker.successor, None)

    def _start_successor(self, worker: _Worker) -> None:
        """The worker is on its last trial: start the next one now, held until this one has ended."""
        if worker.successor is None and not (self.stopped_by or self.failure):
            worker.successor = self.start(held=True)

    def _answer(self, worker: _Worker, go: Go | None) -> None:
        """Release a held successor with `go`, or dismiss it (None): now if it is ready, else once it is."""
        worker.held, worker.dismissed = False, go is None
        if worker.ready and worker.process.is_alive():
            with contextlib.suppress(OSError):
                worker.connection.send(go)

    def _fail(self, failure: Failed) -> None:
        if self.failure is None:
            self.failure = failure
            self._stop_all(signal.SIGTERM)

    def _events(self, timeout: float) -> list[_Worker]:
        """Workers that said something or exited within `timeout`; Ready ones are answered at once.

        A worker that has said its last word is only watched for its exit: its pipe, at EOF, would
        wake the wait again and again.
        """
        waiting = {w.process.sentinel: w for w in self.workers}
        waiting |= {w.connection: w for w in self.workers if w.last is None}
        heard = []
        for handle in multiprocessing.connection.wait(list(waiting), timeout=timeout):
            worker = waiting[handle]
            self._drain(worker)
            heard.append(worker)
        return list(dict.fromkeys(heard))

    def _drain(self, worker: _Worker) -> None:
        with contextlib.suppress(EOFError, OSError):  # the worker exited: its pipe is closed
            while worker.last is None and worker.connection.poll():
                self._receive(worker, worker.connection.recv())

    def _receive(self, worker: _Worker, message) -> None:
        if isinstance(message, Ready):
            worker.ready = message
            if worker.dismissed:
                worker.connection.send(None)
            elif self.go is not None and not worker.held:
                worker.connection.send(self.go)
        elif isinstance(message, LastTrial):
            self._start_successor(worker)
        elif isinstance(message, Note):
            self.notes.append(message.text)
        else:
            worker.last = message

    def stop(self) -> None:
        """Nothing to do after all: the workers end where they are (loading, or waiting for their Go)."""
        self._stop_all(signal.SIGTERM)

    def _stop_all(self, signum: int) -> None:
        """Signal the workers still at work (one that has said its last word is already ending)."""
        for worker in self.workers:
            if worker.last is None and worker.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signum)

    @staticmethod
    def _failure_of(worker: _Worker) -> Failed:
        """What the worker said went wrong; for one that died without a word, how it died."""
        if isinstance(worker.last, Failed):
            return worker.last
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        if worker.ready is None:
            return Failed(f"worker {worker.number} {how} while starting (see above)", 1)
        return Failed(f"worker {worker.number} {how} without finishing its trial (out of memory?); the trial is "
                      "marked FAIL and the study is kept: rerun the same command to resume", 1)
