"""A SQLite file (`sqlite:///path.db`): one process at a time writes it; dead trials are known by their pid."""

from __future__ import annotations

import optuna

from pipeline.storages import database
from pipeline.storages.heartbeats import Heartbeats

# A SQLite study is read by the supervisor while its worker writes: SQLite's default 5 s wait for the other's
# lock ran out on 2 loaded cores (a stopping worker marking its trial while the supervisor refreshed progress).
ENGINE = {"connect_args": {"timeout": 60}}


def open_sqlite(url: str, heartbeats: Heartbeats) -> optuna.storages.RDBStorage:
    return database.open_database(url, None, engine_kwargs=ENGINE)
