"""Work taken off a trial's critical path: run on one background thread while the next trial trains.

Drawing a trial's plots and logging its model takes about a second; the next trial need not wait for it.
At most one job is pending (a new one first waits for the one before), so a worker holds at most one
finished model besides the one it trains, and a worker that ends waits for the last job before it says
how it ended. A job's failure is not lost: it is raised by the next `check`, `submit` or `wait`.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


class Deferred:
    """One background thread, one job at a time; used as a context manager that waits for the last job."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="after-trial")
        self._pending: Future | None = None

    def __enter__(self) -> "Deferred":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self._pending is not None:
                self._pending.exception()  # finish the job, but the error already propagating is the one told
        finally:
            self._executor.shutdown(wait=True)

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` in the background, once the job before it has finished (and raising its failure)."""
        self.wait()
        self._pending = self._executor.submit(job)

    def check(self) -> None:
        """Raise the failure of a job that has already finished, without waiting for one still running."""
        if self._pending is not None and self._pending.done():
            self.wait()

    def wait(self) -> None:
        """Until the pending job has finished; its failure is raised here, once."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()
