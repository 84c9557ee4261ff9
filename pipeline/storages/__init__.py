"""Optuna study storages, one small module per kind, behind one table: `open_storage(url)` picks the kind
its URL names.

Kinds: a journal file (the default; the processes of one machine), a SQLite file (one process), a database
server (PostgreSQL, MySQL: many machines) and a gRPC storage proxy in front of one (hundreds of machines,
one pool of database connections).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import grpc
import optuna
import sqlalchemy.exc
from optuna.storages._heartbeat import BaseHeartbeat  # not exported; what Optuna's own checks look for

from pipeline import stores
from pipeline.storages import database, grpc_proxy, journal, sqlite
from pipeline.storages.heartbeats import Heartbeats


@dataclass(frozen=True)
class Kind:
    name: str
    matches: Callable[[str], bool]
    open: Callable[[str, Heartbeats], optuna.storages.BaseStorage]


# What a storage in use raises when it fails (its database or proxy gone, a commit refused): pipeline.study.storage_lost.
FAILURES = (grpc.RpcError, sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError)

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


def heartbeats_kept_in(storage: optuna.storages.BaseStorage) -> str | None:
    """Where a storage's trials keep their heartbeats: "trial attribute" (through a proxy), "database" (Optuna's own
    table) or None (files: none). A process sees only the heartbeats kept as its own are: one on the database
    directly cannot tell whether a trial run through a proxy is alive, nor the other way round."""
    if isinstance(storage, grpc_proxy.HeartbeatProxy):
        return "trial attribute"
    return "database" if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() else None


def is_database_server(url: str) -> bool:
    """Whether a URL names a database server itself (what a storage proxy can front)."""
    return kind_of(url) is KINDS[-1]


__all__ = ["FAILURES", "Heartbeats", "KINDS", "Kind", "heartbeats_kept_in", "is_database_server", "kind_of", "open_storage"]
