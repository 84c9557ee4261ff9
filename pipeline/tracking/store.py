"""The tracking store: where it is, its experiment, and writes that survive races."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import importlib
import logging
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

import mlflow
import sqlalchemy.exc
from mlflow.store.db.db_types import DATABASE_ENGINES

from pipeline import keys, stores
from pipeline.errors import TrackingError

# What MLflow raises when the store itself fails: its own errors, and the HTTP client's for a server.
STORE_ERRORS = (mlflow.exceptions.MlflowException, OSError)
SQLITE_HEADER = b"SQLite format 3\x00"  # the first bytes of every SQLite database (a new one is still empty)


@dataclass(frozen=True)
class Tracker:
    """A tracking URI and experiment, resolved once per sweep."""

    tracking_uri: str
    experiment_id: str


def connect(tracking_uri: str, experiment_name: str) -> Tracker:
    """Point MLflow at the store and make sure the experiment exists (artifacts beside a SQLite file),
    tagged as a model-training experiment so MLflow 3's UI opens it on its runs, not its GenAI overview.

    A server is asked for its health first, with a short timeout, so an unreachable one is refused before
    anything trains instead of after MLflow's minutes of retries.
    """
    uri = stores.resolve_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    check_sqlite_file(uri)
    mlflow.set_tracking_uri(uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        with _first_use_lock(uri):
            experiment = mlflow.get_experiment_by_name(experiment_name)
        if experiment is None:
            with contextlib.suppress(mlflow.exceptions.MlflowException):  # another process created it first
                mlflow.create_experiment(experiment_name, artifact_location=stores.artifact_root(uri),
                                         tags={keys.EXPERIMENT_KIND: keys.MODEL_TRAINING_KIND})
            experiment = mlflow.get_experiment_by_name(experiment_name)
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(f"{stores.printable(uri)}: experiment '{experiment_name}' is deleted; restore it "
                                f"(mlflow experiments restore) or choose another tracking.experiment")
        if keys.EXPERIMENT_KIND not in experiment.tags:  # made before the pipeline tagged its experiments
            racing_write(mlflow.MlflowClient().set_experiment_tag, experiment.experiment_id, keys.EXPERIMENT_KIND,
                         keys.MODEL_TRAINING_KIND)
        # The process's experiment: a model logged by run id from a thread with no active run (a trial's,
        # logged after the trial) is filed under it, not under MLflow's Default experiment.
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
    except (*STORE_ERRORS, sqlalchemy.exc.SQLAlchemyError) as exc:
        reason = str(exc).strip().splitlines()[0][:300].replace(uri, stores.printable(uri))
        raise TrackingError(f"cannot use the tracking store {stores.printable(uri)}: {reason}") from None
    return Tracker(uri, experiment.experiment_id)


def prepare(tracking_uri: str) -> None:
    """Load the code that talks to this kind of store and write nothing, so the first `connect` is quick.

    A sweep calls it while it waits anyway (the supervisor for its workers' data, a worker for its Go): the SQL
    store's modules take about a second to import, which otherwise falls between the data check and the first
    trial, twice.
    """
    if urlsplit(tracking_uri).scheme.split("+")[0] in DATABASE_ENGINES:
        importlib.import_module("mlflow.store.tracking.sqlalchemy_store")


@contextlib.contextmanager
def _first_use_lock(uri: str) -> Iterator[None]:
    """Two first runs at once on a new SQLite store race through MLflow's schema migrations and one dies
    ("duplicate column name"); a lock file beside the database makes the second wait for the first."""
    if not stores.is_sqlite(uri):
        yield
        return
    database = stores.sqlite_path(uri)
    with open(database.with_name(f"{database.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def existing_store(tracking_uri: str) -> str:
    """The URI of a store a read-only command reads from (predict, a model from the registry), which must be
    there already: MLflow creates a SQLite store it is pointed at, and a read must leave nothing behind."""
    uri = stores.resolve_uri(tracking_uri, create=False)
    if stores.is_sqlite(uri) and not stores.sqlite_path(uri).is_file():
        raise TrackingError(f"no tracking store at {uri}; run `sweep run` first, or pass the store's "
                            "--tracking-uri")
    check_sqlite_file(uri)
    return uri


def check_readable(tracking_uri: str) -> str:
    """The URI of a store to read a study's runs from, refused at once and in one line when it is not there, a
    server does not answer (MLflow would retry for minutes) or MLflow cannot use it: a report of blank results, or a
    traceback, says nothing of why."""
    uri = existing_store(tracking_uri)
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    try:
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
    except (*STORE_ERRORS, sqlalchemy.exc.SQLAlchemyError) as exc:
        reason = str(exc).strip().splitlines()[0][:300].replace(uri, stores.printable(uri))
        raise TrackingError(f"cannot read the tracking store {stores.printable(uri)}: {reason}; pass the "
                            "--tracking-uri the sweep ran with") from None
    return uri


def check_sqlite_file(uri: str) -> None:
    """A SQLite tracking store that is some other file (overwritten, or a wrong path) is refused naming it:
    SQLAlchemy's own error is a traceback, or three lines of SQL and a link."""
    if not stores.is_sqlite(uri):
        return
    database = stores.sqlite_path(uri)
    try:
        with open(database, "rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return  # a new store: MLflow creates it
    except OSError as exc:
        raise TrackingError(f"{database}: cannot be read as the tracking store ({exc.strerror}); fix it or pass "
                            "another --tracking-uri") from None
    if header and header != SQLITE_HEADER:
        raise TrackingError(f"{database}: is not an SQLite database, so not an MLflow tracking store; move it "
                            "aside (a new one is made) or pass the store's --tracking-uri")


def racing_write(write, *args, attempts: int = 4, **kwargs):
    """Idempotent writes that concurrent workers may race on: MLflow upserts tags and registers datasets
    with a read-then-insert, so the loser of a race gets a unique-constraint error; trying again finds the
    row the winner wrote."""
    for attempt in range(attempts):
        try:
            return write(*args, **kwargs)
        except mlflow.exceptions.MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() * 0.5)


def check_reachable(tracking_uri: str) -> None:
    """Refuse an unreachable tracking server before anything trains (MLflow itself retries for minutes)."""
    if tracking_uri.startswith(("http://", "https://")):
        _check_server(tracking_uri)


def _check_server(uri: str) -> None:
    try:
        urllib.request.urlopen(_health_request(uri), timeout=5)
    except urllib.error.HTTPError as exc:  # it is up, and says no
        raise TrackingError(f"the MLflow tracking server {stores.printable(uri)} answered its health check with "
                            f"HTTP {exc.code} {exc.reason}; check the user and password in the URL, or pass another "
                            "--tracking-uri. Nothing was trained.") from None
    except (OSError, ValueError) as exc:  # ValueError: a URL urllib cannot parse (a port that is no number)
        raise TrackingError(f"the MLflow tracking server {stores.printable(uri)} is unreachable ({exc}); start it "
                            "or pass another --tracking-uri. Nothing was trained.") from None


def _health_request(uri: str) -> urllib.request.Request:
    """GET /health, a user and password in the URL sent as HTTP basic auth, as MLflow's client (requests) sends
    them: urllib would take `user:password@host` for the host and call a server that is up unreachable."""
    parts = urlsplit(uri)
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], path=f"{parts.path.rstrip('/')}/health"))
    request = urllib.request.Request(url)
    if user or password:
        credentials = f"{unquote(user)}:{unquote(password)}".encode()
        request.add_header("Authorization", f"Basic {base64.b64encode(credentials).decode()}")
    return request
