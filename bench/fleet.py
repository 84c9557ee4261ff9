"""Simulated machines for bench row p: N processes forked from this one, which each open a store, meet at a
barrier, then work for a fixed window; their records summed into one run's figures.

Forking (not starting N interpreters) keeps a machine's start-up out of the measurement and 128 of them within
the memory of a small host: each shares the parent's imported code and holds only its own connections.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import psycopg

from pipeline.processes import free_port

OPENING = 4  # machines opening their store at once, as machines start at different moments
BARRIER_S = 600  # 128 machines opening 4 at a time on 2 loaded cores


def run_fleet(n: int, prepare: Callable, work: Callable, window_s: float,
              during: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> list[dict]:
    """Fork n machines; each runs prepare(number) (OPENING at once), waits for all at a barrier, then
    work(prepared, end, errors) for window_s. `during` is entered once all are forked (a sampler's thread
    must not be forked) and left when every record is back."""
    context = multiprocessing.get_context("fork")
    barrier, gate, results = context.Barrier(n + 1), context.Semaphore(OPENING), context.Queue()
    machines = [context.Process(target=_machine, args=(number, prepare, work, window_s, barrier, gate, results))
                for number in range(n)]
    for machine in machines:
        machine.start()
    with during():
        barrier.wait(timeout=BARRIER_S)
        records = [results.get(timeout=window_s + BARRIER_S) for _ in machines]
    for machine in machines:
        machine.join()
    return records


def _machine(number: int, prepare: Callable, work: Callable, window_s: float, barrier, gate, results) -> None:
    """One simulated machine. One that could not open its store still meets the others at the barrier."""
    errors: collections.Counter = collections.Counter()
    prepared = None
    try:
        with gate:
            prepared = prepare(number)
    except Exception as exc:
        errors[error_kind("open", exc)] += 1
    try:
        barrier.wait(timeout=BARRIER_S)
    except threading.BrokenBarrierError:
        errors["barrier: not every machine was ready in time"] += 1
        prepared = None
    started = time.time()
    record = work(prepared, started + window_s, errors) if prepared is not None else {}
    results.put({**record, "started": started, "opened": prepared is not None, "errors": dict(errors)})


def error_kind(where: str, exc: Exception) -> str:
    """An error as its kind: where, type and first sentence (see same_kind)."""
    return same_kind(f"{where}: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}")


def same_kind(text: str) -> str:
    """An error's words without what differs between alike ones (store URLs, numbers), to its first sentence."""
    text = re.sub(r"\d+", "N", re.sub(r"\S+://\S+?(?=:?(\s|$))", "<store>", text))
    return re.split(r"(?<=[a-z])\. ", text)[0].rstrip(".")[:200]


def summarise(records: list[dict], window_s: float, unit: str) -> dict:
    """The machines' records as one run's figures: units per second (machines start none after the window, so
    the count is over the time until the last one ended), latency percentiles in ms, errors by kind."""
    errors: collections.Counter = collections.Counter()
    for record in records:
        errors.update(record["errors"])
    done = sum(r.get("done", 0) for r in records)
    ends = [r["last"] for r in records if r.get("last") is not None]
    seconds = max(ends) - min(r["started"] for r in records) if ends else window_s
    figures = {"machines": len(records), "opened": sum(r["opened"] for r in records), unit: done,
               "seconds": seconds, "per_s": done / seconds, "stopped": sum(r.get("stopped", 0) for r in records),
               "errors": dict(errors)}
    for name in sorted({k for r in records for k, v in r.items() if isinstance(v, list)}):
        values = sorted(v for r in records for v in r.get(name, []))
        figures[f"{name}_p50_ms"], figures[f"{name}_p95_ms"] = (percentile(values, 50), percentile(values, 95))
    return figures


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile in milliseconds (nearest rank) of sorted seconds; None when there are none."""
    if not values:
        return None
    return 1000 * values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]


@contextlib.contextmanager
def fresh_database(postgres: str) -> Iterator[tuple[str, psycopg.Connection, str]]:
    """A new database on the server (its URL, an open connection to the server's `postgres` database, its name),
    dropped afterwards."""
    name = f"bench_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"{postgres}/{name}", admin, name
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def own_postgres() -> Iterator[str]:
    """A PostgreSQL server of this bench's own (a new cluster, default settings: 100 connections), on a free
    loopback port, removed afterwards; its URL without a database. Row p fills a server's connections on
    purpose: on a server others use, their connections would count and theirs would be refused."""
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # PostgreSQL refuses root
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as folder:
        os.chmod(folder, 0o777)
        cluster, port = Path(folder) / "cluster", free_port()
        subprocess.run([*as_owner, "initdb", "-D", str(cluster), "-A", "trust", "-U", "postgres"], check=True,
                       capture_output=True)
        subprocess.run([*as_owner, "pg_ctl", "-D", str(cluster), "-l", f"{folder}/log", "-w", "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], check=True,
                       capture_output=True)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}"
        finally:
            subprocess.run([*as_owner, "pg_ctl", "-D", str(cluster), "-m", "fast", "-w", "stop"], check=True,
                           capture_output=True)
