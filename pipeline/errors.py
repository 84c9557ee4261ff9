"""The errors a user can act on. The CLI prints their message as it is, with no traceback.

Bad input (exit status 2) is what the user typed or pointed at; the rest (exit status 1) is the state
of a store or study that the command cannot work with.
"""


class SweepError(Exception):
    exit_code = 1

    def __init__(self, message: str = "", exit_code: int | None = None):
        """`exit_code` carries a status across processes (a worker's error, raised by the supervisor)."""
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInputError(SweepError):
    exit_code = 2


class SweepConfigError(BadInputError, ValueError):
    """A sweep file or option that cannot be run; names the file, the key and what is allowed."""


class DataError(BadInputError):
    """Data that cannot be found or read; names the path and how to supply the data."""


class PredictError(BadInputError):
    """A model or input file that cannot be used for predictions; names it and what is expected."""


class StudyError(SweepError):
    """A study that cannot be opened, resumed or exported as asked."""


class TrackingError(SweepError):
    """The MLflow store cannot be used; names the URI or run."""


class ExportError(SweepError):
    """An export that cannot be made as asked; names the input and what is expected."""


class SweepInterrupted(KeyboardInterrupt):
    """A sweep or confirmation stopped by a signal (Ctrl-C, a notebook's kernel interrupt, SIGTERM) once its
    workers have ended: their trials FAIL, their runs KILLED, the study kept. A KeyboardInterrupt, so that
    `except Exception` does not swallow it; `outcome` is what was done, `exit_code` the shell's 128 + signal."""

    def __init__(self, outcome, signum: int, message: str):
        super().__init__(f"{message}; the study is kept: run it again to resume")
        self.outcome, self.signum, self.exit_code = outcome, signum, 128 + signum
