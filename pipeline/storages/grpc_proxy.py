"""A gRPC storage proxy (`grpc://host:port`): one process holds the database connections, and any number of
machines reach the study through it (`sweep storage-proxy` runs it). Optuna's GrpcStorageProxy, experimental.

PostgreSQL takes 100 connections by default and every machine on it directly holds one or two; behind the
proxy they hold none.
"""

from __future__ import annotations

import contextlib
import time
import warnings

import grpc
import optuna
from optuna.storages._heartbeat import BaseHeartbeat  # not exported; what Optuna's heartbeat checks look for
from optuna.trial import TrialState

from pipeline import keys, stores
from pipeline.errors import StudyError
from pipeline.storages.heartbeats import Heartbeats

READY_WAIT_S = 5  # a proxy that is up answers in milliseconds; a refused connection is retried until then


def open_proxy(url: str, heartbeats: Heartbeats) -> "HeartbeatProxy":
    """A client of the proxy at `url`, once the proxy answers; a proxy that does not is named with how to start it."""
    host, port = stores.proxy_address(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = HeartbeatProxy(host, port, heartbeats)
    try:
        proxy.wait_server_ready(timeout=READY_WAIT_S)
    except ConnectionError:
        proxy.close()
        raise StudyError(f"no storage proxy answers at {url} (waited {READY_WAIT_S} s); start it on that machine "
                         f"with `sweep storage-proxy --storage postgresql://user@host/database --host 0.0.0.0 "
                         f"--port {port}`, or pass another --storage") from None
    return proxy


class HeartbeatProxy(optuna.storages.GrpcStorageProxy, BaseHeartbeat):
    """Optuna's proxy client, with heartbeats: the proxy's protocol has no heartbeat calls, so a running trial's
    heartbeat is a trial system attribute holding the time it was sent, and a trial is stale when that time is
    older than the grace period. Dead machines are then found through the proxy as on a database directly.

    The times are the machines' own clocks, where a database's heartbeats use the database's one clock: machines
    whose clocks differ by less than grace - interval (40 s with the pipeline's 60 s and 20 s) cannot fail each
    other's live trials. A trial without a heartbeat (a process on the database directly, whose heartbeats
    are in the database's own table) is never stale here.
    """

    def __init__(self, host: str, port: int, heartbeats: Heartbeats):
        # gRPC's target for an IPv6 address is [addr]:port; Optuna's client joins host and port as they are.
        super().__init__(host=stores.bracketed(host), port=port)
        self._heartbeats = heartbeats

    def record_heartbeat(self, trial_id: int) -> None:
        """One beat; a lost one is no error (the next may pass), nor is a trial another process has failed."""
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError, grpc.RpcError):
            self.set_trial_system_attr(trial_id, keys.HEARTBEAT, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        oldest = time.time() - self._heartbeats.grace_s
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [t._trial_id for t in running
                if keys.HEARTBEAT in t.system_attrs and t.system_attrs[keys.HEARTBEAT] < oldest]

    def get_heartbeat_interval(self) -> int:
        return self._heartbeats.interval_s

    def get_heartbeat_stale_trial_callback(self) -> None:
        return None
