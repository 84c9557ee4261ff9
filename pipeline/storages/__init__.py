"""Optuna study storages, one small module per kind, behind one table: `open_storage(url)` picks the kind
its URL names.

Kinds: a journal file (the default; the processes of one machine), a SQLite file (one process), a database
server (PostgreSQL, MySQL: many machines) and a gRPC storage proxy in front of one (hundreds of machines,
one pool of database connections).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import optuna

from pipeline import stores
from pipeline.storages import database, grpc_proxy, journal, sqlite
from pipeline.storages.heartbeats import Heartbeats


@dataclass(frozen=True)
class Kind:
    name: str
    matches: Callable[[str], bool]
    open: Callable[[str, Heartbeats], optuna.storages.BaseStorage]


# In order: a database server takes any other URL, and SQLAlchemy refuses a scheme it cannot open.
KINDS = (
    Kind("journal file", stores.is_journal, journal.open_journal),
    Kind("SQLite file", stores.is_sqlite, sqlite.open_sqlite),
    Kind("storage proxy", stores.is_proxy, grpc_proxy.open_proxy),
    Kind("database server", lambda url: True, database.open_database),
)


def kind_of(url: str) -> Kind:
    return next(kind for kind in KINDS if kind.matches(url))


def open_storage(url: str, heartbeats: Heartbeats) -> optuna.storages.BaseStorage:
    """The Optuna storage behind a resolved URL; kinds that can tell a dead machine's trials send heartbeats."""
    return kind_of(url).open(url, heartbeats)


def is_database_server(url: str) -> bool:
    """Whether a URL names a database server itself (what a storage proxy can front)."""
    return kind_of(url) is KINDS[-1]


__all__ = ["Heartbeats", "KINDS", "Kind", "is_database_server", "kind_of", "open_storage"]
