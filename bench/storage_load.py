"""Bench row p: how many machines one study store takes (PostgreSQL directly, a gRPC storage proxy in front of
it, a journal file), and how many trial runs one `mlflow server` takes (bench/tracking_load.py).

N simulated machines are N processes forked from this one once the pipeline's study code is imported (no
TensorFlow, nothing to train, no start-up per process). Each opens the study through pipeline.study.open_study
(a few at a time, as machines start at different moments), waits for all at a barrier, then for a fixed window
runs trials as a worker's loop does: the budget check, then `study.optimize` of one trial whose objective makes a
real trial's storage calls (claim, surplus check, suggestions, its params and run id, one report per epoch, its
measurements). Run through bench/run.py --rows p, or alone for a quick look:

    python bench/storage_load.py --sizes 4 --window 5 --repeats 1
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import json
import os
import multiprocessing
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import psycopg

import tracking_load
from fleet import error_kind, fresh_database, own_postgres, run_fleet, same_kind, summarise
from pipeline import keys
from pipeline.config import SweepConfig, load_sweep, with_overrides
from pipeline.hyperparameters import suggest_params
from pipeline.processes import free_port, start_group, stop_group
from pipeline.study import budget_spent, claim_trial, open_study, refuse_surplus

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "sweeps" / "smoke.yaml"
SIZES = {"postgresql": (8, 32, 128), "grpc proxy": (8, 32, 128), "journal": (8, 32)}
WINDOW_S, REPEATS, EPOCHS = 20, 2, 3
SAMPLE_S = 0.25
TRACKING_SIZES = (8, 32)
PLOT = ROOT / "docs" / "storage-load.png"


def measure_storages(postgres: str, sizes: dict[str, tuple[int, ...]], window_s: float, repeats: int) -> dict:
    """Every storage at every size, the storages of one size side by side, the whole round repeated."""
    runs: dict = {kind: {str(n): [] for n in ns} for kind, ns in sizes.items()}
    for _ in range(repeats):
        for n in sorted({n for ns in sizes.values() for n in ns}):
            for kind, ns in sizes.items():
                if n in ns:
                    runs[kind][str(n)].append(measure_store(kind, n, postgres, window_for(n, window_s)))
                    print(f"{kind} {n}: {json.dumps(runs[kind][str(n)][-1])[:300]}", flush=True)
    return runs


def window_for(n: int, window_s: float) -> float:
    """Longer for many machines: 128 of them on 2 cores take tens of seconds per trial, and a window shorter
    than a few trials would measure only the first, which all machines start at once."""
    return window_s * max(1.0, n / 32)


def measure_store(kind: str, n: int, postgres: str, window_s: float) -> dict:
    """One run: a fresh store, the study created once, then n machines for window_s."""
    with _store(kind, postgres) as (url, connections):
        config = _config(url)
        _create_study(config)
        records = run_fleet(n, functools.partial(_open, config=config), _trials, window_s, connections.watching)
    return {**summarise(records, window_s, "trials"), **connections.figures(), "window_s": window_s,
            "load_avg": os.getloadavg()[0]}


def _config(url: str) -> SweepConfig:
    """The smoke sweep on this storage, with a budget no window spends, and the random sampler: TPE's own CPU
    is each machine's, not the store's, and here every machine shares 2 cores."""
    config = with_overrides(load_sweep(SWEEP), storage=url, n_trials=10**6)
    return dataclasses.replace(config, study=dataclasses.replace(config.study, sampler="random"))


def _create_study(config: SweepConfig) -> None:
    """In a process of its own, so that this one holds no connection its forks would inherit."""
    process = multiprocessing.get_context("fork").Process(target=open_study, args=(config,))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"could not create the study in {config.study.storage}")


def _open(number: int, config: SweepConfig):
    return open_study(config, number), config


def _trials(opened, end: float, errors: collections.Counter) -> dict:
    """Trials until the window closes, or until the study's max_failures_in_a_row, as a worker stops."""
    study, config = opened
    latencies: dict[str, list[float]] = {"ask": [], "tell": [], "trial": []}
    done, in_a_row, last = 0, 0, None
    while time.time() < end and in_a_row < config.study.max_failures_in_a_row:
        marks = {"start": time.perf_counter()}
        try:
            budget_spent(study, config)
            marks["optimize"] = time.perf_counter()
            study.optimize(functools.partial(_objective, config=config, marks=marks), n_trials=1, catch=(),
                           callbacks=[lambda study, trial: marks.__setitem__("told", time.perf_counter())])
        except Exception as exc:
            errors[error_kind("trial", exc)] += 1
            in_a_row += 1
            continue
        in_a_row = 0
        done, last = done + 1, time.time()
        latencies["ask"].append(marks["body"] - marks["optimize"])  # Optuna's stale-trial check, ask, heartbeat
        latencies["tell"].append(marks["told"] - marks["returned"])
        latencies["trial"].append(marks["told"] - marks["start"])
    return {"done": done, "last": last, "stopped": int(in_a_row > 0 and time.time() < end), **latencies}


def _objective(trial, config: SweepConfig, marks: dict) -> float:
    """What pipeline.trial asks of the storage for one trial, with nothing trained."""
    marks["body"] = time.perf_counter()
    claim_trial(trial)
    refuse_surplus(trial, config.study.n_trials)
    params = suggest_params(trial, config.search_space)
    trial.set_user_attr(keys.PARAMS, params.used(config.model.family, "classification"))
    trial.set_user_attr(keys.RUN_ID, uuid.uuid4().hex)
    value = random.random()
    for epoch in range(1, EPOCHS + 1):
        trial.report(value, step=epoch)
        trial.should_prune()
    trial.set_user_attr(keys.MEASUREMENTS, {keys.PARAMS_COUNT: 100_000, keys.MODEL_MB: 0.4, keys.LATENCY_B1: 0.5})
    marks["returned"] = time.perf_counter()
    return value


class Connections:
    """Samples of the connections PostgreSQL holds (pg_stat_activity) for the bench's database and in all,
    read on a connection taken before the machines start: at 100 the server takes no more."""

    def __init__(self, admin: psycopg.Connection | None = None, database: str | None = None):
        self.admin, self.database = admin, database
        self.samples: list[tuple[int, int]] = []

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        if self.admin is None:
            yield
            return
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(stop,), daemon=True)
        sampler.start()
        try:
            yield
        finally:
            stop.set()
            sampler.join()

    def _sample(self, stop: threading.Event) -> None:
        query = "SELECT count(*) FILTER (WHERE datname = %s), count(*) FROM pg_stat_activity"
        while not stop.wait(SAMPLE_S):
            self.samples.append(self.admin.execute(query, (self.database,)).fetchone())

    def figures(self) -> dict:
        if self.admin is None:
            return {}
        return {"connections_max": max((s[0] for s in self.samples), default=None),
                "server_connections_max": max((s[1] for s in self.samples), default=None)}


@contextlib.contextmanager
def _store(kind: str, postgres: str) -> Iterator[tuple[str, Connections]]:
    """The URL machines open for this kind of store, and the sampler of its database's connections."""
    if kind == "journal":
        with tempfile.TemporaryDirectory() as folder:
            yield f"journal:///{folder}/optuna.journal", Connections()
        return
    with fresh_database(postgres) as (url, admin, name):
        if kind == "postgresql":
            yield url, Connections(admin, name)
            return
        with storage_proxy(url) as proxy:
            yield proxy, Connections(admin, name)


@contextlib.contextmanager
def storage_proxy(url: str) -> Iterator[str]:
    """`sweep storage-proxy` in front of the database, on a free loopback port; its grpc:// URL. Its stderr goes
    to a file: a pipe nobody reads while it runs would fill and stop it."""
    port = free_port()
    with tempfile.TemporaryFile() as stderr:
        proxy = start_group([sys.executable, "-m", "pipeline.cli", "storage-proxy", "--storage", url, "--host",
                             "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _wait_for_port(port, proxy, stderr)
            yield f"grpc://127.0.0.1:{port}"
        finally:
            stop_group(proxy)


def _wait_for_port(port: int, process: subprocess.Popen, stderr, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            stderr.seek(0)
            raise RuntimeError(f"the storage proxy exited: {stderr.read().decode()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the storage proxy did not listen on port {port} within {seconds:.0f} s")


def row_p(data_dir: str | None = None, postgres: str | None = None, window_s: float = WINDOW_S,
          repeats: int = REPEATS) -> dict:
    """Both sides on a PostgreSQL server of the bench's own (or `postgres`), each round of storages followed by
    the tracking server's, the round repeated; then the plot."""
    with own_postgres() if postgres is None else contextlib.nullcontext(postgres) as server:
        figures = _rounds(server, window_s, repeats)
    plot(figures, PLOT)
    return figures


def _rounds(postgres: str, window_s: float, repeats: int) -> dict:
    runs: dict = {kind: {str(n): [] for n in ns} for kind, ns in SIZES.items()}
    served: dict = {str(n): [] for n in TRACKING_SIZES}
    for _ in range(repeats):
        for kind, ns in measure_storages(postgres, SIZES, window_s, 1).items():
            for n, figures in ns.items():
                runs[kind][n] += figures
        for n, figures in tracking_load.measure_tracking(TRACKING_SIZES, postgres, window_s).items():
            served[n].append(figures)
    with psycopg.connect(f"{postgres}/postgres") as admin:
        limit = int(admin.execute("SHOW max_connections").fetchone()[0])
    return {"window_s": window_s, "repeats": repeats, "max_connections": limit, "cores": os.cpu_count(),
            "storage": runs, "tracking": served}


def plot(r: dict, path: Path) -> None:
    """Trials per second against machines, one line per storage (medians of the repeats)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.6))
    for kind, sizes in r["storage"].items():
        ns = sorted(sizes, key=int)
        axes.plot([int(n) for n in ns], [_median(sizes[n], "per_s") for n in ns], marker="o", label=kind)
        for n in ns:
            opened = min(run["opened"] for run in sizes[n])
            if opened < int(n):
                axes.annotate(f"{opened} of {n} opened", (int(n), _median(sizes[n], "per_s")), ha="right",
                              textcoords="offset points", xytext=(-6, 6))
    axes.set(xscale="log", yscale="log", xlabel="machines (processes)", ylabel="trials per second, whole study",
             title=f"One study store, {r['cores']} cores")
    axes.set_xticks([8, 32, 128], labels=["8", "32", "128"])
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def render_p(r: dict) -> list[str]:
    rows = [f"| {kind} | {_machines(n, runs)} | {_rates(runs)} | "
            f"{_pair(runs, 'ask')} | {_pair(runs, 'tell')} | {_pair(runs, 'trial')} | {_connections(runs)} | "
            f"{_errors(runs)} |" for kind, sizes in r["storage"].items() for n, runs in sizes.items()]
    served = [f"| {n} | {_rates(runs)} | "
              f"{_pair(runs, 'run')} | {_errors(runs)} |" for n, runs in r["tracking"].items()]
    return ["## p. Many machines on one study store and one tracking server", "",
            "N simulated machines, each a process forked from one that imported the pipeline's study code (no "
            "TensorFlow, nothing trained), open the study through `open_study` (the smoke sweep with the random "
            f"sampler), meet at a barrier, then for {r['window_s']:.0f} s ({window_for(128, r['window_s']):.0f} s "
            "for 128 machines) run trials as a worker's loop does: the budget check, then `study.optimize` of "
            "one trial whose objective makes a real trial's storage calls (claim, surplus check, suggestions, "
            "params and run id, a report per epoch, measurements). *Ask* is from `optimize` to the objective's "
            "first line (Optuna's stale-trial check, the new trial, its first heartbeat); *tell* from the "
            "objective's return to the callback; *trial* the whole loop turn. "
            f"Medians of {r['repeats']} runs (trials per second: each run in brackets; errors: each run's); "
            "latencies in ms, p50 / p95. *grpc proxy* is `sweep storage-proxy` in front of the same database, the "
            "machines on `grpc://127.0.0.1:PORT`. "
            "Machines start no trial after the window; trials per second count every trial over the time "
            "until the last one ended. PostgreSQL is a server of the bench's own (default settings, "
            f"`max_connections` {r['max_connections']}); connections: the most its database held "
            f"(pg_stat_activity, sampled every {SAMPLE_S} s). All on {r['cores']} cores shared by the machines, "
            "the database and the proxy, nothing else running.", "",
            "| storage | machines | trials/s | ask ms | tell ms | trial ms | PostgreSQL connections | errors |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, "",
            *_error_kinds(r), "![Trials per second against machines, per storage](storage-load.png)", "",
            "One `mlflow server` (PostgreSQL backend store, `--artifacts-destination`, its default 4 workers) "
            "taking trial runs from N clients, each logging as `pipeline.tracking` does for one trial with "
            "nothing trained: a nested run under one parent with params and tags, the dataset input, 5 epochs "
            "of 4 metrics, the results, then a JSON report as an artifact through the server (plots and the "
            f"model left out). Runs per second for {r['window_s']:.0f} s, counted as trials are; time per run in "
            "ms, p50 / p95.", "",
            "| clients | runs/s | per run ms | errors |", "| --- | --- | --- | --- |", *served, ""]


def _rates(runs: list[dict]) -> str:
    each = ", ".join(f"{run['per_s']:.1f}" for run in runs)
    return f"{_median(runs, 'per_s'):.1f} ({each})"


def _median(runs: list[dict], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def _pair(runs: list[dict], name: str) -> str:
    p50, p95 = _median(runs, f"{name}_p50_ms"), _median(runs, f"{name}_p95_ms")
    return "-" if p50 is None else f"{p50:.0f} / {p95:.0f}"


def _connections(runs: list[dict]) -> str:
    most = [run["connections_max"] for run in runs if run.get("connections_max") is not None]
    return f"{max(most)}" if most else "-"


def _machines(n: str, runs: list[dict]) -> str:
    """The machines started, and how many of them could open the study where some could not."""
    short = [run["opened"] for run in runs if run["opened"] < run["machines"]]
    return n + (f" ({', '.join(str(o) for o in short)} opened)" if short else "")


def _errors(runs: list[dict]) -> str:
    """Each run's error count, and the machines that stopped after max_failures_in_a_row."""
    counts = ", ".join(str(sum(run["errors"].values())) for run in runs)
    stopped = sum(run["stopped"] for run in runs)
    return counts + (f" ({stopped} machines stopped)" if stopped else "")


def _error_kinds(r: dict) -> list[str]:
    kinds: collections.Counter = collections.Counter()
    for sizes in (*r["storage"].values(), r["tracking"]):
        for n, runs in sizes.items():
            for run in runs:
                for kind, count in run["errors"].items():
                    kinds[f"{same_kind(kind)} (N={n})"] += count
    return ["Errors, all runs together:", "", *[f"- {count} x {kind}" for kind, count in kinds.most_common()],
            ""] if kinds else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL server URL without database (default: a "
                        "server of the bench's own, which needs PostgreSQL's initdb and pg_ctl)")
    parser.add_argument("--sizes", default=None, help="comma-separated machine counts for every storage")
    parser.add_argument("--window", type=float, default=WINDOW_S, help="seconds each run measures")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    sizes = SIZES if args.sizes is None else {k: tuple(int(n) for n in args.sizes.split(",")) for k in SIZES}
    with own_postgres() if args.postgres is None else contextlib.nullcontext(args.postgres) as server:
        print(json.dumps(measure_storages(server, sizes, args.window, args.repeats), indent=2))


if __name__ == "__main__":
    main()
