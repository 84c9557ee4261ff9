"""A database server (`postgresql://user@host/database`, MySQL): the storage machines share directly.

Its trials send Optuna's heartbeats, so any process can fail the trials of a machine that died.
"""

from __future__ import annotations

import random
import time
import warnings

import optuna

from pipeline.storages.heartbeats import Heartbeats


def open_database(url: str, heartbeats: Heartbeats | None, attempts: int = 3, engine_kwargs: dict | None = None
                  ) -> optuna.storages.RDBStorage:
    """Processes that start together on a fresh database race to create Optuna's tables; the loser retries."""
    import sqlalchemy.exc

    options = {}
    if heartbeats is not None:
        options.update(heartbeat_interval=heartbeats.interval_s, grace_period=heartbeats.grace_s)
    if engine_kwargs:
        options["engine_kwargs"] = engine_kwargs
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats, stable here
                return optuna.storages.RDBStorage(url, **options)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() / 2)
