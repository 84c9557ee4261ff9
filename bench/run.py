"""Benchmarks of the sweep pipeline on this machine; writes docs/benchmarks.md. Not a test.

    python bench/run.py --data-dir ../shared/data/fashion-mnist            # every row (about 2.5 hours)
    python bench/run.py --data-dir ../shared/data/fashion-mnist --rows a,d # some rows

Every figure comes from running the real `sweep` command in a subprocess, with fresh stores in a
temporary folder, and reading the outcome back from Optuna and MLflow. Each row's figures are saved in
bench/results/ROW.json and the page is rebuilt from all saved rows, so one row can be rerun alone.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from importlib import metadata
from pathlib import Path

import optuna
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capacity  # noqa: E402  (bench/capacity.py: row j)
import cnn  # noqa: E402  (bench/cnn.py: row n)
import costs  # noqa: E402  (bench/costs.py: row i)
import levers  # noqa: E402  (bench/levers.py: row l)
import peers  # noqa: E402  (bench/peers.py: row k)
import regression  # noqa: E402  (bench/regression.py: row o)
import storage_load  # noqa: E402  (bench/storage_load.py: row p)
import throughput  # noqa: E402  (bench/throughput.py: row m)
import time_to_accuracy  # noqa: E402  (bench/time_to_accuracy.py: row q)
import trust  # noqa: E402  (bench/trust.py: row h)
import warm_start  # noqa: E402  (bench/warm_start.py: row w)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
SWEEPS = ROOT / "sweeps"
BEFORE_DEFERRED = "f602629"  # the last commit that logged plots and models on the trial's critical path
MOONSHOT = 0.905  # issue 15: a Dense-only network on Fashion-MNIST, 20 minutes on 2 cores
TPE_STARTUP = 10  # Optuna's TPESampler draws its first 10 trials at random: the same draws in both arms of row b


def sweep(args: list[str], store: Path, storage: str | None = None) -> tuple[float, float]:
    """Run `sweep ...` against the stores in `store`; return (process start time, wall seconds)."""
    command = [sys.executable, "-m", "pipeline.cli", *args, "--no-progress",
               "--storage", storage or f"sqlite:///{store}/optuna.db", "--tracking-uri", f"sqlite:///{store}/mlflow.db"]
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return start, time.time() - start


def trials(store: Path, study: str, storage: str | None = None) -> list:
    from pipeline.study import optuna_storage

    return optuna.load_study(study_name=study, storage=optuna_storage(storage or f"sqlite:///{store}/optuna.db")).trials


def trial_runs(store: Path, experiment: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`sweep.role` = 'trial'", max_results=1000)
    return sorted(runs, key=lambda r: int(r.data.tags["sweep.trial_number"]))


def best_of(store: Path, study: str, storage: str | None = None) -> dict:
    finished = [t for t in trials(store, study, storage) if t.state.name == "COMPLETE"]
    best = max(finished, key=lambda t: t.value)
    return {"trial": best.number, "val_accuracy": best.value, "test_accuracy": _test_accuracy(store, best),
            "params": best.user_attrs["hyperparameters"]}


def _test_accuracy(store: Path, trial: optuna.trial.FrozenTrial) -> float:
    """Results live in MLflow only: the trial's run holds its test accuracy."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db")
    return client.get_run(trial.user_attrs["mlflow_run_id"]).data.metrics["test_accuracy"]


def row_a(data_dir: str, reps: int = 3) -> dict:
    """Pipeline overhead: `sweep run sweeps/seed.yaml` with the default stores (./mlruns) vs a bare Keras script,
    whole processes, alternating, on two kinds of start. Cold: the OS page cache dropped before each process
    (Python, TensorFlow and the data read from disk again) and, for the pipeline, a fresh folder, so the run
    creates its stores as a user's first run does. Warm: files cached, stores already there. Each run's
    seconds are cut into start-up, training, after training and the tail (pipeline: from its trial's MLflow
    run; bare: from the script's own clock)."""
    cold = {"pipeline_s": [], "bare_s": [], "pipeline_parts": [], "bare_parts": []}
    warm = {"pipeline_s": [], "bare_s": [], "pipeline_parts": [], "bare_parts": []}
    bare_accuracy = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "warm"
        home.mkdir()
        _user_run(home, data_dir, "smoke.yaml")  # the warm runs' stores exist
        for rep in range(reps):
            fresh = Path(tmp) / f"cold-{rep}"
            fresh.mkdir()
            _record(cold, "pipeline", _user_run(fresh, data_dir, "seed.yaml", drop_caches=True))
            _record(cold, "bare", _bare(data_dir, drop_caches=True)[:2])
            _record(warm, "pipeline", _user_run(home, data_dir, "seed.yaml", n_trials=rep + 1))
            *measured, accuracy = _bare(data_dir)
            _record(warm, "bare", measured)
            bare_accuracy.append(accuracy)
        seed_accuracy = [r.data.metrics["test_accuracy"] for r in trial_runs(home / "mlruns", "fashion-mnist-seed")]
    for start in (cold, warm):
        start["ratio"] = statistics.median(start["pipeline_s"]) / statistics.median(start["bare_s"])
    return {**warm, "cold": cold, "caches_dropped": _can_drop_caches(),
            "seed_test_accuracy": seed_accuracy, "bare_test_accuracy": bare_accuracy}


def _record(start: dict, arm: str, measured) -> None:
    """One run's (wall seconds, their parts) into a start's lists."""
    start[f"{arm}_s"].append(measured[0])
    start[f"{arm}_parts"].append(measured[1])


def _user_run(folder: Path, data_dir: str, sweep_file: str, n_trials: int = 1,
              drop_caches: bool = False) -> tuple[float, dict]:
    """`sweep run` as a user types it in `folder`: the default stores, ./mlruns/optuna.journal and mlflow.db.
    Returns the wall seconds and their parts, read from the trial's MLflow run."""
    if drop_caches:
        _drop_caches()
    start = time.time()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(SWEEPS / sweep_file), "--no-progress",
                    "--n-trials", str(n_trials), "--data-dir", data_dir], cwd=folder, check=True,
                   capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    end = time.time()
    parts = throughput.breakdown(f"sqlite:///{folder}/mlruns/mlflow.db", start, end,
                                 yaml.safe_load((SWEEPS / sweep_file).read_text())["tracking"]["experiment"])
    return end - start, {"start-up": parts["startup"], "after training": parts["after_training"],
                         "tail": parts["tail"],
                         "training": end - start - parts["startup"] - parts["after_training"] - parts["tail"]}


def _bare(data_dir: str, drop_caches: bool = False) -> tuple[float, dict, float]:
    """bench/bare_keras.py: wall seconds, their parts from the script's own clock, and its test accuracy."""
    if drop_caches:
        _drop_caches()
    start = time.time()
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bare_keras.py"), data_dir], check=True,
                         capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    end = time.time()
    *_, phases, accuracy = out.stdout.strip().splitlines()
    stamps = json.loads(phases)
    return end - start, {"start-up": stamps["loaded"] - start, "training": stamps["trained"] - stamps["loaded"],
                         "after training": stamps["evaluated"] - stamps["trained"],
                         "tail": end - stamps["evaluated"]}, float(accuracy)


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def _can_drop_caches() -> bool:
    return os.access(DROP_CACHES, os.W_OK)


def _drop_caches() -> None:
    """Empty the OS page cache (root only; elsewhere a cold start is only a fresh store)."""
    if _can_drop_caches():
        os.sync()
        DROP_CACHES.write_text("3\n")


def row_b(data_dir: str, n_trials: int) -> dict:
    """Pruning: the default sweep with and without pruning, same seed and number of trials."""
    out = {"n_trials": n_trials}
    for label, pruner in (("pruned", None), ("unpruned", "none")):
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp)
            path = _variant(store, "fashion_mnist.yaml", **({"pruner": pruner} if pruner else {}))
            _, wall = sweep(["run", str(path), "--n-trials", str(n_trials), "--timeout", "1000000",
                             "--data-dir", data_dir], store)
            done = trials(store, "fashion-mnist-ann")
            out[label] = {"wall_s": wall, "epochs": sum(len(t.intermediate_values) for t in done),
                          "pruned_trials": sum(t.state.name == "PRUNED" for t in done),
                          "trials": [_trial_record(t) for t in done],
                          **best_of(store, "fashion-mnist-ann")}
    out["epoch_saving"] = 1 - out["pruned"]["epochs"] / out["unpruned"]["epochs"]
    out["val_gap_points"] = 100 * (out["unpruned"]["val_accuracy"] - out["pruned"]["val_accuracy"])
    return out


def _trial_record(t: optuna.trial.FrozenTrial) -> dict:
    return {"number": t.number, "state": t.state.name, "epochs_run": len(t.intermediate_values),
            "epochs": t.params.get("epochs"), "val_accuracy": t.value, "params": t.params,
            "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)]}


def row_c(data_dir: str) -> dict:
    """Quality under the default sweep's own 20-minute budget."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        _, wall = sweep(["run", str(SWEEPS / "fashion_mnist.yaml"), "--data-dir", data_dir], store)
        done = trials(store, "fashion-mnist-ann")
        return {"wall_s": wall, "timeout_s": yaml.safe_load((SWEEPS / "fashion_mnist.yaml").read_text())["study"]["timeout"],
                "complete": sum(t.state.name == "COMPLETE" for t in done),
                "pruned": sum(t.state.name == "PRUNED" for t in done), **best_of(store, "fashion-mnist-ann")}


def row_d(data_dir: str, reps: int = 3) -> dict:
    """Start-up: `sweep run` to its first trial's MLflow run; the commands that do not train; and an
    `mlflow server` with and without MLflow 3's job consumers (which the pipeline turns off)."""
    def first_trial_delay(store: Path, n: int) -> float:
        start, _ = sweep(["run", str(SWEEPS / "smoke.yaml"), "--n-trials", str(n), "--data-dir", data_dir], store)
        return trial_runs(store, "fashion-mnist-smoke")[n - 1].info.start_time / 1000 - start

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        fresh = first_trial_delay(store, 1)
        existing = [first_trial_delay(store, n) for n in range(2, reps + 2)]
        stores = ["--storage", f"sqlite:///{store}/optuna.db", "--tracking-uri", f"sqlite:///{store}/mlflow.db"]
        commands = {"help": ["--help"], "report": ["report", str(SWEEPS / "smoke.yaml"), *stores]}
        timings = {name: [_command_seconds(args) for _ in range(reps)] for name, args in commands.items()}
        timings["ui"] = [_ui_url_seconds(store) for _ in range(reps)]
        servers = {label: _server_footprint(f"sqlite:///{store}/mlflow.db", enabled)
                   for label, enabled in (("jobs_on", "true"), ("jobs_off", "false"))}
    return {"fresh_store_s": fresh, "existing_store_s": existing, "commands_s": timings, "servers": servers}


def _command_seconds(args: list[str]) -> float:
    start = time.time()
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=True, capture_output=True)
    return time.time() - start


def _ui_url_seconds(store: Path) -> float:
    """From launching `sweep ui` to the line with the experiment's URL; then the UI is stopped."""
    import signal

    port = _free_port()
    start = time.time()
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "ui", str(SWEEPS / "smoke.yaml"), "--port",
                                str(port), "--storage", f"sqlite:///{store}/optuna.db", "--tracking-uri",
                                f"sqlite:///{store}/mlflow.db"], stdout=subprocess.PIPE, text=True)
    process.stdout.readline()
    seconds = time.time() - start
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return seconds


def _server_footprint(backend: str, job_execution: str) -> dict:
    """Seconds until an `mlflow server` answers /health, and the resident memory of all its processes."""
    from pipeline.processes import stop_group, wait_for_http

    port = _free_port()
    start = time.time()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--host",
                               "127.0.0.1", "--port", str(port), "--workers", "1"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": job_execution})
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server)
        ready = time.time() - start
        time.sleep(10)  # let it start whatever it starts in the background
        processes = _group_processes(server.pid)
        return {"ready_s": ready, "processes": len(processes), "rss_mb": sum(processes.values())}
    finally:
        stop_group(server)


def _group_processes(group: int) -> dict[int, float]:
    """Resident MiB of every process in a process group, read from /proc."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:  # field 5 of stat, the process group id
                rss = next(line for line in (status.parent / "status").read_text().splitlines()
                           if line.startswith("VmRSS:"))
                found[int(status.parent.name)] = int(rss.split()[1]) / 1024
        except (OSError, StopIteration, ValueError, IndexError):
            continue
    return found


def _free_port() -> int:
    from pipeline.processes import free_port

    return free_port()


def row_e(data_dir: str, n_trials: int = 30) -> dict:
    """Memory: peak RSS after each trial of one 30-trial sweep, with the process replaced every 10 trials
    (the default) and never, side by side; and what replacing it costs in wall time."""
    out = {"n_trials": n_trials}
    for label, per_process in (("recycled", 10), ("never", 0)):
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp)
            path = _variant(store, "smoke.yaml", trials_per_process=per_process)
            _, wall = sweep(["run", str(path), "--n-trials", str(n_trials), "--data-dir", data_dir], store)
            rss = [r.data.metrics["peak_rss_mb"] for r in trial_runs(store, "fashion-mnist-smoke")]
        out[label] = {"trials_per_process": per_process, "wall_s": wall, "rss_mb": rss,
                      "growth_mb": rss[-1] - rss[0], "late_minus_early_mb": max(rss[-10:]) - max(rss[:10])}
    return out


def row_f(data_dir: str, n_trials: int = 8) -> dict:
    """Workers: the same 8-trial sweep with 1 and with 2 worker processes (5 epochs per trial)."""
    out = {"n_trials": n_trials}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp)
            path = _variant(store, "fashion_mnist.yaml", {"epochs": 5}, pruner="none")
            _, wall = sweep(["run", str(path), "--n-trials", str(n_trials), "--timeout", "1000000",
                             "--workers", str(workers), "--data-dir", data_dir], store,
                            storage=f"journal:///{store}/optuna.journal")
            out[str(workers)] = {"wall_s": wall, "trials_per_hour": 3600 * n_trials / wall,
                                 **best_of(store, "fashion-mnist-ann", f"journal:///{store}/optuna.journal")}
    out["speed_up"] = out["2"]["trials_per_hour"] / out["1"]["trials_per_hour"]
    return out


LOAD_SCRIPT = """
import sys, time
from pathlib import Path
from pipeline.config import DataConfig
from pipeline.data import load_raw
start = time.time()
raw = load_raw(DataConfig(dataset=sys.argv[1], data_dir=sys.argv[2]), seed=0)
seconds = time.time() - start
peak = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
print(seconds, peak / 1024, len(raw.y_train), len(raw.y_test))
"""


def row_g(data_dir: str, reps: int = 3) -> dict:
    """Image folders: Fashion-MNIST written as 70,000 PNGs in class folders, loaded like the IDX files; cold
    (decoding every file) and warm (the decoded-array cache), in fresh processes."""
    import shutil

    from pipeline.data.images import CACHE

    def load(source: str, folder: str) -> dict:
        out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, source, folder], check=True, capture_output=True,
                             text=True).stdout.split()
        return {"seconds": float(out[0]), "peak_mb": float(out[1]), "train": int(out[2]), "test": int(out[3])}

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fashion-pngs"
        written = _write_pngs(data_dir, folder)
        idx = [load("idx", data_dir) for _ in range(reps)]
        cold, warm = [], []
        for _ in range(reps):
            shutil.rmtree(CACHE, ignore_errors=True)
            cold.append(load("images", str(folder)))
            warm.append(load("images", str(folder)))
    return {"pngs": written["files"], "png_mb": written["mb"], "write_s": written["seconds"], "idx": idx,
            "cold": cold, "warm": warm, "cores": os.cpu_count()}


def _write_pngs(data_dir: str, folder: Path) -> dict:
    from PIL import Image

    from pipeline.data.keras_sets import DATASETS, load_keras_dataset

    raw = load_keras_dataset("fashion_mnist", data_dir)
    names = [n.replace("/", "-") for n in DATASETS["fashion_mnist"].class_names]
    start, size = time.time(), 0
    for split, images, labels in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        for index, (image, label) in enumerate(zip(images, labels)):
            path = folder / split / names[label] / f"{index:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
            size += path.stat().st_size
    return {"files": len(raw.y_train) + len(raw.y_test), "mb": size / 2**20, "seconds": time.time() - start}


def row_h(data_dir: str) -> dict:
    return trust.row_h(data_dir, sweep, best_of, SWEEPS)


def row_i(data_dir: str) -> dict:
    return costs.row_i(data_dir, sweep, SWEEPS, PAGE.parent)


def row_k(data_dir: str, budget_s: float = 1200, seeds: tuple[int, ...] = (1, 2)) -> dict:
    return peers.row_k(data_dir, SWEEPS / "fashion_mnist.yaml", _variant, budget_s, seeds, _saver("k"))


def row_q(data_dir: str, budget_s: float = 1200, seeds: tuple[int, ...] = (42, 1, 2)) -> dict:
    figures = time_to_accuracy.row_q(data_dir, SWEEPS / "fashion_mnist.yaml", _variant, budget_s, seeds,
                                     _saver("q"))
    before = RESULTS / "q_before.json"
    time_to_accuracy.draw(figures, PAGE.parent / "time-to-accuracy.png",
                          json.loads(before.read_text()) if before.exists() else None)
    return figures


def row_q_before(data_dir: str, budget_s: float = 300, seeds: tuple[int, ...] = (42, 1, 2)) -> dict:
    """Row q's pipeline runs without the default sweep's first trials (`study.start_with: []`): the lever's
    before. Five minutes, the span of the first goal; run it before row q, whose plot draws it dashed."""
    without_first_trials = functools.partial(_variant, start_with=[])
    return time_to_accuracy.row_q(data_dir, SWEEPS / "fashion_mnist.yaml", without_first_trials, budget_s, seeds,
                                  _saver("q_before"), tools=("pipeline",))


def row_w(data_dir: str, mnist_dir: str | None = None, budget_s: float = 300, seeds: tuple[int, ...] = (42, 1),
          source_s: float = 600, top_k: int = 2) -> dict:
    """Warm starts: the default sweep on MNIST warm-started from a Fashion-MNIST study of the default sweep, against a
    cold one. MNIST is the folder of its four IDX files (`--mnist-dir`; Keras' download does not work offline)."""
    if mnist_dir is None:
        raise SystemExit("row w needs --mnist-dir: a folder with MNIST's four IDX files")
    return warm_start.row_w(data_dir, mnist_dir, SWEEPS / "fashion_mnist.yaml", _variant, sweep, budget_s, seeds,
                            source_s, top_k, _saver("w"))


def _saver(row: str):
    """Writes a long row's figures after each run, so a row cut short keeps what it measured."""
    started = time.time()

    def save(figures: dict) -> None:
        partial = {**figures, "measured": {"date": date.today().isoformat(), "seconds": time.time() - started}}
        (RESULTS / f"{row}.json").write_text(json.dumps(partial, indent=2) + "\n")
    return save


def row_k_same_space(data_dir: str, budget_s: float = 1200, seeds: tuple[int, ...] = (1, 2)) -> dict:
    return peers.row_same_space(data_dir, SWEEPS / "fashion_mnist.yaml", _variant, budget_s, seeds)


def row_m(data_dir: str, before: str = BEFORE_DEFERRED) -> dict:
    """This checkout against a clone of it at `before`, alternately."""
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "before"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", before], check=True)
        figures = throughput.row_m(data_dir, SWEEPS, {f"before ({before[:7]})": clone, "now": ROOT})
    return {**figures, "before": before}


ROWS = {"a": row_a, "b": row_b, "c": row_c, "d": row_d, "e": row_e, "f": row_f, "g": row_g, "h": row_h, "i": row_i,
        "j": capacity.row_j, "k": row_k, "k_same_space": row_k_same_space,
        "l": levers.row_l, "m": row_m, "n": cnn.row_n, "o": regression.row_o,
        "p": storage_load.row_p, "q": row_q, "q_before": row_q_before, "w": row_w}


def _variant(folder: Path, source: str, search_space: dict | None = None, **study) -> Path:
    """A copy of a shipped sweep file with some `study` settings and search-space entries replaced."""
    raw = yaml.safe_load((SWEEPS / source).read_text())
    raw["study"].update(study)
    raw["search_space"].update(search_space or {})
    path = folder / source
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_page() -> None:
    results = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text(render(results))


def render(results: dict) -> str:
    info = machine()
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines = [
        "# Benchmarks", "",
        "Generated by `python bench/run.py --data-dir ../shared/data/fashion-mnist` (rows: `--rows a,b,...`).",
        f"Machine: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB, no GPU; Python "
        f"{info['python']}; {versions}.",
        "Each row runs the real `sweep` command in a subprocess with fresh stores; figures are read back "
        "from Optuna and MLflow. Timings on this machine are noisy: compare ratios measured side by side.", "",
    ]
    for row, render_row in RENDERERS.items():
        if row in results:
            lines += render_row(results[row]) + [
                f"_Measured {results[row]['measured']['date']}, {results[row]['measured']['seconds'] / 60:.0f} min._",
                ""] + _more_runs(row, results) + _notes(row)
    return "\n".join(lines)


def _more_runs(row: str, results: dict) -> list[str]:
    """Other measurements of a row kept beside it: earlier designs, earlier sizes, other budgets."""
    if row == "a":
        return (_before_cuts(results["a_before_cuts"]) if "a_before_cuts" in results else []) + (
            _previous_design(results["a_previous_design"]) if "a_previous_design" in results else [])
    if row == "b":
        return _earlier_pruning_runs(results)
    if row == "c":
        return _earlier_budget_runs(results)
    if row == "h":
        return [line for key, before in (("h_before_first_trials", "before the default sweep's first trials "
                                           "(study.start_with)"), ("h_before_levers", trust.BEFORE_LEVERS))
                if key in results for line in trust.render_before(results[key], before)]
    if row == "k":
        return peers.render_other_budgets(results)
    if row == "q" and "q_before" in results:
        return time_to_accuracy.render_before(results["q_before"])
    return []


def _notes(row: str) -> list[str]:
    """The written reading of a row's figures (bench/notes/ROW.md), kept beside the generated table."""
    path = ROOT / "bench" / "notes" / f"{row}.md"
    return [path.read_text().strip(), ""] if path.is_file() else []


def _earlier_pruning_runs(results: dict) -> list[str]:
    """Row b's earlier, smaller runs (bench/results/b_N_trials.json), kept so the page shows every attempt."""
    earlier = [results[k] for k in sorted(results) if k.startswith("b_")]
    return [f"Earlier run of this row with {r['n_trials']} trials each ({r['measured']['date']}): "
            f"{100 * r['epoch_saving']:.0f}% fewer epochs, best validation accuracy {r['pruned']['val_accuracy']:.4f} "
            f"with pruning and {r['unpruned']['val_accuracy']:.4f} without. With only 15 trials, 10 of them TPE's "
            "random start-up, the comparison rests on which random draws pruning cuts." for r in earlier] + (
            [""] if earlier else [])


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _render_a(r: dict) -> list[str]:
    fmt = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    starts = [("warm", r)] + ([("cold", r["cold"])] if "cold" in r else [])
    lines = ["## a. Pipeline overhead", "",
             "One trial of `sweeps/seed.yaml` through `sweep run` (data load, Optuna, MLflow logging with the "
             "model artifact) vs `bench/bare_keras.py` (the same model, epochs, data and split in plain Keras), "
             "whole processes, alternating. Warm: files cached, stores already created. Cold: "
             + ("the OS page cache dropped before each process, and " if r.get("caches_dropped") else "")
             + "a fresh folder, whose stores the run creates (a user's first `sweep run`).", "",
             "| start | | wall seconds (each run) | median | ratio |", "| --- | --- | --- | --- | --- |"]
    for label, s in starts:
        lines += [f"| {label} | `sweep run sweeps/seed.yaml` | {fmt(s['pipeline_s'])} | "
                  f"{statistics.median(s['pipeline_s']):.1f} | {s['ratio']:.3f}x |",
                  f"| {label} | bare Keras script | {fmt(s['bare_s'])} | {statistics.median(s['bare_s']):.1f} | |"]
    lines += ["", f"Goal at most 1.05x: warm {_verdict(r['ratio'] <= 1.05)}"
              + (f", cold {_verdict(r['cold']['ratio'] <= 1.05)}" if "cold" in r else "") + ". The reference "
              f"model's test accuracy, rerun here: {', '.join(f'{a:.4f}' for a in r['seed_test_accuracy'])} "
              f"through the pipeline, {', '.join(f'{a:.4f}' for a in r['bare_test_accuracy'])} bare "
              "(the tutorial reports 0.8736).", ""]
    if "pipeline_parts" in r:
        lines += _overhead_parts(starts)
    return lines


def _overhead_parts(starts: list[tuple[str, dict]]) -> list[str]:
    """Where the seconds go, medians: start-up (imports, data, stores, until the trial's run or the fit
    starts), training, after training (test scoring; the pipeline also measures and logs the model) and the
    tail (the pipeline's parent run, study plots and summary; the interpreter's exit)."""
    names = ("start-up", "training", "after training", "tail")
    lines = ["Where the seconds go (medians): start-up is imports, data and stores until the trial's MLflow run "
             "(pipeline) or `fit` (bare) starts; after training is test scoring, and for the pipeline the "
             "model's measurements and logging; the tail is the pipeline's parent run, study plots and summary, "
             "and the interpreter's exit.", "",
             "| start | | " + " | ".join(names) + " |", "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for label, s in starts:
        for arm in ("pipeline", "bare"):
            parts = s[f"{arm}_parts"]
            lines.append(f"| {label} | {arm} | " + " | ".join(
                f"{statistics.median(p[name] for p in parts):.1f}" for name in names) + " |")
    return lines + [""]


def _before_cuts(r: dict) -> list[str]:
    """Row a as measured before issue 25's cuts (commit d3718ee, bench/results/a_before_cuts.json), on another
    machine of this kind: the before of the table above, with the side-by-side check on this one."""
    parts = lambda start, arm, name: statistics.median(p[name] for p in start[f"{arm}_parts"])  # noqa: E731
    said = [f"{label} {statistics.median(s['pipeline_s']):.1f} s against {statistics.median(s['bare_s']):.1f} s "
            f"({s['ratio']:.2f}x; start-up {parts(s, 'pipeline', 'start-up'):.1f} against "
            f"{parts(s, 'bare', 'start-up'):.1f} s, tail {parts(s, 'pipeline', 'tail'):.1f} against "
            f"{parts(s, 'bare', 'tail'):.1f} s)" for label, s in (("warm", r), ("cold", r["cold"]))]
    return [f"Before the cuts of issue 25 (commit d3718ee, measured {r['measured']['date']} on another machine of "
            f"this kind, an AMD EPYC): {'; '.join(said)}. The supervisor then loaded MLflow, Optuna and matplotlib "
            "before starting its worker, both processes loaded the SQL store's code between the data check and the "
            "first trial, and the worker's interpreter took ~2 s to unload TensorFlow after the last trial. On this "
            "machine, side by side (3 alternating pairs of warm `sweep run sweeps/seed.yaml`, no bare script): "
            "61.9 s at d3718ee, 53.1 s after the cuts (medians).", ""]


def _previous_design(r: dict) -> list[str]:
    """Row a of the single-process design (commit 620d00e, bench/results/a_previous_design.json), run on the
    same machine the same day: what the supervisor and worker processes cost."""
    return [f"The single-process design before the redesign (commit 620d00e), measured the same way on the same "
            f"machine the same day: {statistics.median(r['pipeline_s']):.1f} s against the bare script's "
            f"{statistics.median(r['bare_s']):.1f} s, ratio {r['ratio']:.3f}x.", ""]


def _render_b(r: dict) -> list[str]:
    rows = [f"| {label} | {v['epochs']} | {v['pruned_trials']} | {v['wall_s'] / 60:.1f} | "
            f"{v['val_accuracy']:.4f} | {v['test_accuracy']:.4f} |" for label, v in
            (("median pruning", r["pruned"]), ("no pruning", r["unpruned"]))]
    ok = r["epoch_saving"] >= 0.40 and r["val_gap_points"] <= 0.3
    return ["## b. Pruning", "",
            f"`sweeps/fashion_mnist.yaml`, {r['n_trials']} trials each, seed 42, with its median pruner and with "
            "`pruner: none`.", "",
            "| | epochs trained | trials pruned | wall minutes | best val_accuracy | its test_accuracy |",
            "| --- | --- | --- | --- | --- | --- |", *rows, "",
            f"Epochs saved: {100 * r['epoch_saving']:.0f}%; best validation accuracy {r['pruned']['val_accuracy']:.4f} "
            f"with pruning, {r['unpruned']['val_accuracy']:.4f} without ({-r['val_gap_points']:+.2f} points) "
            f"(goal: at least 40% fewer epochs within 0.3 points: {_verdict(ok)}). Wall time "
            f"{100 * (1 - r['pruned']['wall_s'] / r['unpruned']['wall_s']):.0f}% less: after TPE's first "
            f"{TPE_STARTUP} random trials the two sweeps pick different models, whose epochs differ in cost, and "
            "every trial pays a fixed cost (start, test scoring, model and plots logged).", "",
            *_lost_by_pruning(r), *_trials_side_by_side(r)]


def _lost_by_pruning(r: dict) -> list[str]:
    """The random start-up trials (the same draws in both sweeps) that pruning cut but that would have
    beaten the pruned sweep's best: the median pruner compares trials epoch by epoch, so slow starters lose."""
    best = r["pruned"]["val_accuracy"]
    lost = [(a, b) for a, b in zip(r["pruned"]["trials"][:TPE_STARTUP], r["unpruned"]["trials"][:TPE_STARTUP])
            if a["state"] == "PRUNED" and a["epochs"] == b["epochs"] and b["val_accuracy"] > best]
    return [f"Trial {a['number']} was pruned after {a['epochs_run']} of its {a['epochs']} epochs at "
            f"val_accuracy {a['curve'][-1]:.4f}; left to finish (in the unpruned sweep, the same draw) it reached "
            f"{b['val_accuracy']:.4f}, above the pruned sweep's best. The median pruner compares trials epoch by "
            "epoch, so a slow starter (large batch, low learning rate, many epochs) loses early; raise "
            "`warmup_epochs` or set `pruner: none` where such models win." for a, b in lost] + ([""] if lost else [])


def _trials_side_by_side(r: dict) -> list[str]:
    """Trial by trial: TPE's first 10 trials are random draws from the seed, the same in both sweeps."""
    def cell(t: dict) -> str:
        last = t["val_accuracy"] if t["val_accuracy"] is not None else (t["curve"] or [None])[-1]
        value = "-" if last is None else f"{last:.4f}" + (" (last epoch)" if t["state"] == "PRUNED" else "")
        return f"{t['epochs_run']} of {t['epochs']} | {t['state'].lower()} | {value}"

    pairs = zip(r["pruned"]["trials"], r["unpruned"]["trials"])
    rows = [f"| {a['number']} | {cell(a)} | {cell(b)} |" for a, b in pairs]
    return ["| trial | pruned: epochs | state | val_accuracy | unpruned: epochs | state | val_accuracy |",
            "| --- | --- | --- | --- | --- | --- | --- |", *rows, ""]


def _render_c(r: dict) -> list[str]:
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
    gap = 100 * (MOONSHOT - r["test_accuracy"])
    return ["## c. Quality under a budget", "",
            f"`sweep run sweeps/fashion_mnist.yaml` with its {r['timeout_s']} s timeout: {r['complete']} trials "
            f"completed, {r['pruned']} pruned, {r['wall_s'] / 60:.1f} min wall.", "",
            "| | val_accuracy | test_accuracy |", "| --- | --- | --- |",
            f"| best trial (#{r['trial']}) | {r['val_accuracy']:.4f} | {r['test_accuracy']:.4f} |",
            "| reference tutorial (published) | - | 0.8736 |", "",
            f"Best params: {params}. Goal test accuracy at least {MOONSHOT}: {_verdict(gap <= 0)}"
            + ("" if gap <= 0 else f" ({gap:.2f} points short)") + " (the reference model rerun here is in row a).", ""]


def _earlier_budget_runs(results: dict) -> list[str]:
    """Row c before the training levers (bench/results/c_before_levers.json), kept to show the change."""
    r = results.get("c_before_levers")
    return [] if r is None else [
        f"The same row {trust.BEFORE_LEVERS} (measured {r['measured']['date']}): {r['complete']} trials completed, {r['pruned']} "
        f"pruned; the best trial (#{r['trial']}) scored {r['val_accuracy']:.4f} on validation and "
        f"**{r['test_accuracy']:.4f}** on the test set.", ""]


def _render_d(r: dict) -> list[str]:
    commands = r["commands_s"]
    median = statistics.median
    on, off = r["servers"]["jobs_on"], r["servers"]["jobs_off"]
    return ["## d. Start-up", "",
            "From launching `sweep run sweeps/smoke.yaml` to its first trial's MLflow run starting: the "
            "supervisor (MLflow, Optuna), then a worker process (TensorFlow, data load and checks, store set-up).",
            "", "| | seconds |", "| --- | --- |",
            f"| fresh stores | {r['fresh_store_s']:.1f} |",
            f"| existing stores (median of {len(r['existing_store_s'])}) | {median(r['existing_store_s']):.1f} |", "",
            "The commands that do not train never import TensorFlow (median of "
            f"{len(commands['help'])} runs each, whole processes):", "",
            "| command | seconds | goal |", "| --- | --- | --- |",
            f"| `sweep --help` | {median(commands['help']):.2f} | under 1 s: {_verdict(median(commands['help']) < 1)} |",
            f"| `sweep report` on a finished study | {median(commands['report']):.2f} | under 5 s: "
            f"{_verdict(median(commands['report']) < 5)} |",
            f"| `sweep ui` until it prints the runs view's URL | {median(commands['ui']):.2f} | under 5 s: "
            f"{_verdict(median(commands['ui']) < 5)} |", "",
            "An `mlflow server` (as `sweep ui` and `--workers` start it) with MLflow 3's job consumers "
            "(`MLFLOW_SERVER_ENABLE_JOB_EXECUTION`, on by default) and without them (what the pipeline sets); "
            "memory is the resident total of the server's process group 10 s after it answers.", "",
            "| job execution | processes | resident MiB | seconds to answer /health |", "| --- | --- | --- | --- |",
            f"| on (MLflow's default) | {on['processes']} | {on['rss_mb']:.0f} | {on['ready_s']:.1f} |",
            f"| off (the pipeline) | {off['processes']} | {off['rss_mb']:.0f} | {off['ready_s']:.1f} |", "",
            f"Turning the job consumers off saves {on['rss_mb'] - off['rss_mb']:.0f} MiB and "
            f"{on['processes'] - off['processes']} processes per server, and {on['ready_s'] - off['ready_s']:.1f} s "
            "of start-up.", ""]


def _render_e(r: dict) -> list[str]:
    marks = (1, 10, 11, 20, 21, r["n_trials"])
    rows = [f"| {label} | " + " | ".join(f"{v['rss_mb'][t - 1]:.0f}" for t in marks) +
            f" | {v['late_minus_early_mb']:+.0f} | {v['wall_s']:.0f} |"
            for label, v in (("every 10 trials (default)", r["recycled"]), ("never", r["never"]))]
    late = r["recycled"]["late_minus_early_mb"]
    return ["## e. Memory", "",
            f"Peak resident memory (VmHWM) of the worker process after each trial of one `sweep run "
            f"sweeps/smoke.yaml --n-trials {r['n_trials']}`, logged by each trial as `peak_rss_mb`, with "
            "`study.trials_per_process` at its default 10 (the supervisor replaces the worker with a fresh "
            "process, which resumes the study) and at 0 (never).", "",
            "| worker replaced | " + " | ".join(f"after trial {t}" for t in marks) +
            " | max of trials 21-30 minus max of 1-10 (MiB) | wall seconds |",
            "| --- |" + " --- |" * (len(marks) + 2), *rows, "",
            f"Without replacement the process grows {r['never']['growth_mb']:+.0f} MiB from trial 1 to "
            f"{r['n_trials']} (TensorFlow keeps each trained model's traced graphs; tensorflow/tensorflow#61791). "
            f"With it, memory is bounded by the first 10 trials' peak however long the sweep runs: trials 21-30 "
            f"peak {late:+.0f} MiB against trials 1-10 (goal flat: {_verdict(late < 20)}), for "
            f"{r['recycled']['wall_s'] - r['never']['wall_s']:.0f} s more wall time ({(r['n_trials'] - 1) // r['recycled']['trials_per_process']} more start-ups).", ""]


def _render_f(r: dict) -> list[str]:
    rows = [f"| {w} | {r[w]['wall_s'] / 60:.1f} | {r[w]['trials_per_hour']:.0f} | {r[w]['val_accuracy']:.4f} | "
            f"{r[w]['test_accuracy']:.4f} |" for w in ("1", "2")]
    return ["## f. Workers", "",
            f"`sweeps/fashion_mnist.yaml` at 5 epochs per trial, no pruning, {r['n_trials']} trials, "
            "`--workers 1` and `--workers 2` on a journal-file study (each worker gets cores/workers TensorFlow "
            "threads; MLflow writes go through one local `mlflow server`).", "",
            "| workers | wall minutes | trials per hour | best val_accuracy | its test_accuracy |",
            "| --- | --- | --- | --- | --- |", *rows, "",
            f"Speed-up {r['speed_up']:.2f}x (goal at least 1.6x: {_verdict(r['speed_up'] >= 1.6)}).", ""]


def _render_g(r: dict) -> list[str]:
    median = statistics.median

    def row(label: str, runs: list[dict]) -> str:
        return (f"| {label} | {median([x['seconds'] for x in runs]):.1f} | {median([x['peak_mb'] for x in runs]):.0f} | "
                f"{runs[0]['train']:,} + {runs[0]['test']:,} |")

    cold, idx, warm = (median([x["seconds"] for x in r[k]]) for k in ("cold", "idx", "warm"))
    return ["## g. Loading an image folder", "",
            f"Fashion-MNIST written as {r['pngs']:,} PNG files ({r['png_mb']:.0f} MB) in `train/<class>/` and "
            f"`test/<class>/` folders, loaded with `data.dataset: images`, against the four IDX files "
            f"(`data.dataset: idx`); each load in a fresh process, median of {len(r['idx'])}, on {r['cores']} cores. "
            "Cold: no cache, every file decoded (threads); warm: the decoded arrays read back from "
            "`~/.cache/keras-sweep-pipeline`, as every worker after the first and every later command does.", "",
            "| source | seconds | peak resident MiB | train + test images |", "| --- | --- | --- | --- |",
            row("IDX files", r["idx"]), row("PNG folder, cold", r["cold"]), row("PNG folder, warm (cache)", r["warm"]),
            "", f"Decoding every file takes {cold:.0f} s once ({cold / idx:.0f}x the IDX load: two passes over "
            f"{r['pngs']:,} small files, headers then pixels, in threads that share the GIL); after that the cache "
            f"brings a load to {warm:.1f} s, most of it listing and stat-ing the files for the cache key. The "
            "arrays take 1 byte per pixel: 70,000 28x28 images are 52 MiB, the same as the IDX files.", ""]


RENDERERS = {"a": _render_a, "b": _render_b, "c": _render_c, "d": _render_d, "e": _render_e, "f": _render_f,
             "g": _render_g, "h": trust.render_h, "i": costs.render_i, "j": capacity.render_j,
             "k": peers.render_k, "l": levers.render_l, "m": throughput.render_m, "n": cnn.render_n,
             "o": regression.render_o, "p": storage_load.render_p, "q": time_to_accuracy.render_q,
             "w": warm_start.render_w}


def machine() -> dict:
    memory_kb = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemTotal")).split()[1])
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    names = ("tensorflow", "keras", "optuna", "mlflow", "numpy", "scikit-learn")
    return {"cores": os.cpu_count(), "memory_gib": round(memory_kb / 2**20, 1), "cpu": cpu,
            "python": platform.python_version(), "versions": {n: metadata.version(n) for n in names}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    parser.add_argument("--rows", default="a,b,c,d,e,f,g,h,i,j", help="comma-separated rows to run (a-q, w, k_same_space, q_before)")
    parser.add_argument("--trials-b", type=int, default=30, help="trials per sweep in row b")
    parser.add_argument("--budget-k", type=float, default=1200, help="seconds per tool and seed in row k")
    parser.add_argument("--seeds-k", default="1,2", help="comma-separated seeds for row k")
    parser.add_argument("--budget-q", type=float, default=1200, help="seconds per tool and seed in row q")
    parser.add_argument("--seeds-q", default="42,1,2", help="comma-separated study seeds for row q")
    parser.add_argument("--mnist-dir", help="row w: a folder with MNIST's four IDX files")
    parser.add_argument("--budget-w", type=float, default=300, help="seconds per arm and seed in row w")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for row in args.rows.split(","):
        print(f"row {row} ...", flush=True)
        started = time.time()
        peer_budget = {"budget_s": args.budget_k, "seeds": tuple(int(s) for s in args.seeds_k.split(","))}
        time_budget = {"budget_s": args.budget_q, "seeds": tuple(int(s) for s in args.seeds_q.split(","))}
        extra = {"b": {"n_trials": args.trials_b}, "k": peer_budget, "k_same_space": peer_budget,
                 "q": time_budget, "q_before": {"seeds": time_budget["seeds"]},
                 "w": {"mnist_dir": args.mnist_dir, "budget_s": args.budget_w}}.get(row, {})
        figures = ROWS[row](args.data_dir, **extra)
        figures["measured"] = {"date": date.today().isoformat(), "seconds": time.time() - started}
        (RESULTS / f"{row}.json").write_text(json.dumps(figures, indent=2) + "\n")
        write_page()
        print(f"row {row}: {json.dumps(figures)[:400]}", flush=True)
    write_page()


if __name__ == "__main__":
    main()
