"""Where a sweep keeps its state: the Optuna storage URL and the MLflow tracking URI.

Relative SQLite paths are resolved against the working directory once, here, so the printed `mlflow ui`
command and the stored artifact locations keep working from any directory later.
"""

from __future__ import annotations

from pathlib import Path

SQLITE_PREFIX = "sqlite:///"
JOURNAL_PREFIX = "journal:///"


def is_sqlite(uri: str) -> bool:
    return uri.startswith(SQLITE_PREFIX)


def sqlite_path(uri: str) -> Path:
    return Path(uri[len(SQLITE_PREFIX):]).expanduser().resolve()


def is_journal(uri: str) -> bool:
    """`journal:///path`: an Optuna journal file, which several processes on one machine can share."""
    return uri.startswith(JOURNAL_PREFIX)


def journal_path(uri: str) -> Path:
    return Path(uri[len(JOURNAL_PREFIX):]).expanduser().resolve()


def local_path(uri: str) -> Path | None:
    """The file behind a SQLite or journal URI; None for a server."""
    if is_sqlite(uri):
        return sqlite_path(uri)
    return journal_path(uri) if is_journal(uri) else None


def resolve_uri(uri: str, create: bool = True) -> str:
    """Make a SQLite or journal URI absolute (creating its folder when asked); others pass through."""
    path = local_path(uri)
    if path is None:
        return uri
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE_PREFIX if is_sqlite(uri) else JOURNAL_PREFIX}{path}"


def artifact_root(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite store live beside its database (mlruns/artifacts); a server decides its own."""
    if not is_sqlite(tracking_uri):
        return None
    return (sqlite_path(tracking_uri).parent / "artifacts").as_uri()
