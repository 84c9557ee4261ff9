"""A journal file (`journal:///path`): the default storage, which the processes of one machine share.

It has no heartbeats: a dead process's trials are known by their pid (pipeline.study.fail_dead_trials).
"""

from __future__ import annotations

import optuna

from pipeline import stores
from pipeline.storages.heartbeats import Heartbeats


def open_journal(url: str, heartbeats: Heartbeats) -> optuna.storages.JournalStorage:
    backend = optuna.storages.journal.JournalFileBackend(str(stores.journal_path(url)))
    return optuna.storages.JournalStorage(backend)
