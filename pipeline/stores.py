"""Where a sweep keeps its state: the Optuna storage URL and the MLflow tracking URI.

Relative SQLite paths are resolved against the working directory once, here, so the printed `mlflow ui`
command and the stored artifact locations keep working from any directory later.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import BadInputError

SQLITE_PREFIX = "sqlite:///"
JOURNAL_PREFIX = "journal:///"
PROXY_PREFIX = "grpc://"
PROXY_PORT = 13000  # `sweep storage-proxy`'s default port
DEFAULT_FOLDER = "mlruns"  # where the default stores live, relative to the working directory


def is_sqlite(uri: str) -> bool:
    return uri.startswith(SQLITE_PREFIX)


def sqlite_path(uri: str) -> Path:
    return _real_path(uri[len(SQLITE_PREFIX):])


def is_journal(uri: str) -> bool:
    """`journal:///path`: an Optuna journal file, which several processes on one machine can share."""
    return uri.startswith(JOURNAL_PREFIX)


def journal_path(uri: str) -> Path:
    return _real_path(uri[len(JOURNAL_PREFIX):])


def is_proxy(uri: str) -> bool:
    """`grpc://host:port`: an Optuna storage proxy in front of a database server (`sweep storage-proxy`)."""
    return uri.startswith(PROXY_PREFIX)


def bracketed(host: str) -> str:
    """A host as a URL holds it and gRPC binds or dials it: an IPv6 address in brackets (`[::1]`)."""
    return f"[{host}]" if ":" in host else host


def proxy_address(uri: str) -> tuple[str, int]:
    """The host and port of `grpc://HOST:PORT` (an IPv6 address without its brackets); anything else is refused,
    naming the form."""
    form = (f"a storage proxy's URL is grpc://HOST:PORT, e.g. grpc://127.0.0.1:{PROXY_PORT} or grpc://[::1]:"
            f"{PROXY_PORT} (the URL `sweep storage-proxy` prints)")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:  # not a number, beyond 65535, or an unclosed `[`
        raise BadInputError(f"{printable(uri)}: {form}") from None
    if parts.username is not None or parts.password is not None:
        raise BadInputError(f"{printable(uri)}: a storage proxy's URL takes no user or password (the proxy logs in "
                            f"to the database itself); pass grpc://HOST:PORT")
    if not parts.hostname or not port or parts.path.strip("/") or parts.query:
        raise BadInputError(f"{printable(uri)}: {form}")
    return parts.hostname, port


def _real_path(given: str) -> Path:
    """Absolute, links followed; a symlink loop (`ln -s mlruns mlruns`) is left for _refuse_dangling_links to
    name, where Path.resolve would raise "Symlink loop" from wherever a path is merely printed."""
    return Path(os.path.realpath(Path(given).expanduser()))


def local_path(uri: str) -> Path | None:
    """The file behind a SQLite or journal URI; None for a server."""
    if is_sqlite(uri):
        return sqlite_path(uri)
    return journal_path(uri) if is_journal(uri) else None


def resolve_uri(uri: str, create: bool = True) -> str:
    """Make a SQLite or journal URI absolute; others pass through.

    With `create`, the default folder (./mlruns) is made when missing, but no other: a mistyped path
    must not quietly start a new study in a new folder somewhere.
    """
    path = local_path(uri)
    if path is None:
        return uri
    _refuse_dangling_links(uri)
    if create:
        _ensure_folder(path.parent, uri)
    return f"{SQLITE_PREFIX if is_sqlite(uri) else JOURNAL_PREFIX}{path}"


def _refuse_dangling_links(uri: str) -> None:
    """A symlink on the way to a store whose target is gone would have that target created wherever it
    points (SQLite makes the file, the default folder is made): refused, naming both."""
    given = Path(uri[len(SQLITE_PREFIX if is_sqlite(uri) else JOURNAL_PREFIX):]).expanduser()
    for link in (given, *given.parents):
        if link.is_symlink() and not link.exists():
            raise BadInputError(f"{printable(uri)}: {link} is a symlink to {os.readlink(link)}, which does not "
                                "exist or loops back on itself; create its target, remove the link, or choose "
                                "another path")


def check_folder(uri: str) -> None:
    """Refuse now, before anything starts, a store whose folder cannot be used or would have to be invented (or
    a storage proxy's URL without its port)."""
    if is_proxy(uri):
        proxy_address(uri)
    path = local_path(uri)
    if path is not None:
        _refuse_dangling_links(uri)
        _ensure_folder(path.parent, uri, create=False)


def _ensure_folder(folder: Path, uri: str, create: bool = True) -> None:
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"{uri}: {folder} is a file, not a folder; move it away or choose another path")
    if folder.is_dir():
        return
    if folder != Path(DEFAULT_FOLDER).resolve():
        raise BadInputError(f"{uri}: the folder {folder} does not exist; create it first (mkdir -p {folder}) "
                            "or fix the path")
    if create:
        folder.mkdir(parents=True)


def identity(uri: str) -> str:
    """What names a store whoever opens it: the absolute file, or the server without user and password
    (machines joining one study may log in differently)."""
    path = local_path(uri)
    if path is not None:
        return str(path)
    parts = urlsplit(uri)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def printable(uri: str) -> str:
    """A store's URI as it may be printed or put in an error: a file's in full, a server's without user name,
    password and options (the query may hold a password too). Plain text, so a URL that does not parse is
    shown without them as well."""
    if local_path(uri) is not None or "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{rest.split('?')[0].rpartition('@')[2]}"


def artifact_root(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite store live beside its database (mlruns/artifacts); a server decides its own."""
    if not is_sqlite(tracking_uri):
        return None
    return (sqlite_path(tracking_uri).parent / "artifacts").as_uri()
