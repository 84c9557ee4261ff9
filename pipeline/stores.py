"""Where a sweep keeps its state: the Optuna storage URL and the MLflow tracking URI.

Relative SQLite paths are resolved against the working directory once, here, so the printed `mlflow ui`
command and the stored artifact locations keep working from any directory later.
"""

from __future__ import annotations

from pathlib import Path

SQLITE_PREFIX = "sqlite:///"


def is_sqlite(uri: str) -> bool:
    return uri.startswith(SQLITE_PREFIX)


def sqlite_path(uri: str) -> Path:
    return Path(uri[len(SQLITE_PREFIX):]).expanduser().resolve()


def resolve_uri(uri: str, create: bool = True) -> str:
    """Make a SQLite URI absolute (creating its folder when asked); other URIs pass through."""
    if not is_sqlite(uri):
        return uri
    path = sqlite_path(uri)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE_PREFIX}{path}"


def artifact_root(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite store live beside its database (mlruns/artifacts); a server decides its own."""
    if not is_sqlite(tracking_uri):
        return None
    return (sqlite_path(tracking_uri).parent / "artifacts").as_uri()
