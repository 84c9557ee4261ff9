"""Which running trials a sweep waits for before it leaves, and what a dead one costs the budget: on real
storages (a journal file, PostgreSQL directly), with trials written as other processes would leave them."""

from __future__ import annotations

import datetime
import socket
import subprocess
import sys

import optuna
from optuna.trial import TrialState

from pipeline import keys
from pipeline.config import load_sweep
from pipeline.study import DIED, awaited, budget_left, fail_dead_trials, open_study, settled

from conftest import write_sweep


def _config(tmp_path, storage: str, **changes):
    return load_sweep(write_sweep(tmp_path, study__storage=storage, **changes))


def _running(study: optuna.Study, host: str, pid: int, heartbeats: str | None = None) -> int:
    """A RUNNING trial as another process leaves it: claimed, by host and pid, with where its heartbeats go."""
    trial_id = study._storage.create_new_trial(study._study_id)
    study._storage.set_trial_user_attr(trial_id, keys.HOST, host)
    study._storage.set_trial_user_attr(trial_id, keys.PID, pid)
    if heartbeats:
        study._storage.set_trial_user_attr(trial_id, keys.HEARTBEATS, heartbeats)
    return trial_id


def _complete(study: optuna.Study) -> None:
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.5))


def test_a_dead_trial_s_time_until_it_was_noticed_is_not_charged_to_the_timeout(tmp_path):
    """A trial whose process died is ended when someone notices: a heartbeat later, or a rerun days later. Its
    start-to-end time is no time the study spent, or a rerun would find its timeout used up."""
    config = _config(tmp_path, f"journal:///{tmp_path}/optuna.journal", study__n_trials=10, study__timeout=60)
    study = open_study(config)
    started = datetime.datetime.now() - datetime.timedelta(days=1)
    for reason in (DIED, None):  # failed by pid, or by a heartbeat check that gives no reason (Optuna's own)
        dead = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={keys.ERROR: reason} if reason else {})
        dead.datetime_start, dead.datetime_complete = started, datetime.datetime.now()
        study.add_trial(dead)
    assert budget_left(study, config)[1] == 60, "neither dead trial is charged"
    own = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={keys.ERROR: "ValueError: nan loss"})
    own.datetime_start, own.datetime_complete = started, started + datetime.timedelta(seconds=25)
    study.add_trial(own)
    assert budget_left(study, config)[1] == 35, "a trial that failed by itself spent its time"


def test_a_sweep_waits_for_another_command_s_trial_on_this_machine_but_not_for_its_own_workers(tmp_path):
    """The last place held by a live process of another `sweep run` here: awaited (if it dies, it is failed at
    once by pid). Held by this command's own worker (a child of this process): the supervisor watches that one."""
    config = _config(tmp_path, f"journal:///{tmp_path}/optuna.journal", study__n_trials=2)
    study = open_study(config)
    _complete(study)
    own_worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _running(study, socket.gethostname(), own_worker.pid)
        assert awaited(study, config) == [] and settled(study, config), "its own worker's trial: not awaited"
    finally:
        own_worker.kill()
        own_worker.wait()
    assert fail_dead_trials(study) == [1], "its process is gone: failed at once"
    other_command = _running(study, socket.gethostname(), 1)  # init: alive, and nobody's worker here
    assert [t._trial_id for t in awaited(study, config)] == [other_command] and not settled(study, config)


def test_a_trial_on_another_machine_is_awaited_only_where_its_heartbeats_can_be_seen(tmp_path, new_database):
    """On PostgreSQL directly, another machine's trial with heartbeats in the database is awaited; one that a
    machine runs through a storage proxy keeps its heartbeats as a trial attribute this process cannot see, and
    waiting for it would never end (its death could not be noticed): not awaited. On a journal file shared over a
    network disk, there are no heartbeats: not awaited either."""
    config = _config(tmp_path, new_database("optuna"), study__n_trials=3)
    study = open_study(config)
    _complete(study)
    direct = _running(study, "machine-a", 11, heartbeats="database")
    _running(study, "machine-b", 12, heartbeats="trial attribute")
    assert [t._trial_id for t in awaited(study, config)] == [direct]
    journal = _config(tmp_path, f"journal:///{tmp_path}/optuna.journal", study__n_trials=2)
    shared = open_study(journal)
    _complete(shared)
    _running(shared, "machine-c", 13)
    assert awaited(shared, journal) == [] and settled(shared, journal)
