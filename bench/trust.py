"""Bench row h: trusting the winner. The default sweep under its own budget, then `sweep confirm` with
K=3 configurations and R=3 seeds: the raw winner's test accuracy against the confirmed winner's mean,
whether the choice changed, what the confirmation cost, and the verdict. Run through bench/run.py."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from pathlib import Path

TOP_K, SEEDS = 3, 3


def row_h(data_dir: str, sweep, best_of, sweeps: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        path = str(sweeps / "fashion_mnist.yaml")
        _, search_s = sweep(["run", path, "--data-dir", data_dir], store)
        raw = best_of(store, "fashion-mnist-ann")
        _, confirm_s = sweep(["confirm", path, "--top-k", str(TOP_K), "--seeds", str(SEEDS), "--data-dir", data_dir],
                             store)
        confirmed = _confirmed(store, path)
    winner = confirmed["results"][0]
    return {"search_s": search_s, "confirm_s": confirm_s, "raw": raw, "confirmed": confirmed["results"],
            "differs": winner["trial"] != raw["trial"], "verdict": confirmed["verdict"], "top_k": TOP_K,
            "seeds": SEEDS}


def _confirmed(store: Path, path: str) -> dict:
    """The confirmation's results and the verdict, read back by the pipeline's own code in a subprocess."""
    code = f"""
import json
from pipeline import confirmation, tracking, verdict
from pipeline.config import load_sweep, with_overrides
from pipeline.study import load_existing_study
config = with_overrides(load_sweep({path!r}), storage="sqlite:///{store}/optuna.db",
                        tracking_uri="sqlite:///{store}/mlflow.db")
study = load_existing_study(config.study.storage, config.study.name)
uri = config.tracking.tracking_uri
found = confirmation.results(study, confirmation.find(config.study.storage, config.study.name),
                             lambda run: tracking.test_metric(uri, run, config.test_metric))
print(json.dumps({{"results": [{{"trial": c.trial_number, "val": c.values, "test": c.tests, "mean": c.mean,
                                "sd": c.std, "test_mean": c.test_mean, "test_sd": c.test_std}} for c in found],
                  "verdict": verdict.describe(verdict.for_study(study, found, config.study.metric))}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def render_h(r: dict) -> list[str]:
    raw, winner = r["raw"], r["confirmed"][0]
    rows = [f"| {c['trial']} | {c['mean']:.4f} ± {c['sd']:.4f} | {c['test_mean']:.4f} ± {c['test_sd']:.4f} | "
            f"{', '.join(f'{v:.4f}' for v in c['test'])} |" for c in r["confirmed"]]
    return ["## h. Trusting the winner: confirmation with more seeds", "",
            f"`sweep run sweeps/fashion_mnist.yaml` ({r['search_s'] / 60:.1f} min), then `sweep confirm "
            f"sweeps/fashion_mnist.yaml --top-k {r['top_k']} --seeds {r['seeds']}` "
            f"({r['confirm_s'] / 60:.1f} min: {r['top_k'] * (r['seeds'] - 1)} retrainings).", "",
            "| trial | val_accuracy mean ± sd | test_accuracy mean ± sd | test_accuracy per seed |",
            "| --- | --- | --- | --- |", *rows, "",
            f"Raw winner (the single best trial, #{raw['trial']}): validation {raw['val_accuracy']:.4f}, test "
            f"{raw['test_accuracy']:.4f}. Confirmed winner (#{winner['trial']}): test {winner['test_mean']:.4f} ± "
            f"{winner['test_sd']:.4f} over {len(winner['test'])} seeds. The confirmed choice "
            f"{'differs from' if r['differs'] else 'is the same configuration as'} the raw one; the raw winner's "
            f"single test score is {100 * (raw['test_accuracy'] - winner['test_mean']):+.2f} points from the mean "
            "a user should expect of the configuration shipped.", "",
            "The verdict on the search:", "", "```", r["verdict"], "```", ""]


BEFORE_LEVERS = ("before the default sweep trained with the cosine schedule and searched label smoothing and "
                 "1-pixel shifts")


def render_before(r: dict, before: str = BEFORE_LEVERS) -> list[str]:
    """Row h as measured before a change to the default sweep: before it searched the training levers
    (h_before_levers.json), before it started from its first trials (h_before_first_trials.json)."""
    winner = r["confirmed"][0]
    return [f"{before.capitalize()} (measured {r['measured']['date']}): raw winner #{r['raw']['trial']} test "
            f"{r['raw']['test_accuracy']:.4f}; confirmed winner #{winner['trial']} test {winner['test_mean']:.4f} ± "
            f"{winner['test_sd']:.4f} over {len(winner['test'])} seeds.", ""]
