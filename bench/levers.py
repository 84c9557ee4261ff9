"""Bench row l: the training levers, one at a time, on the default sweep's best configuration so far.

Each variant changes one setting of the base (bench row h's winner before the levers) and is trained by
the pipeline's own model builder and training loop on the full split, with SEEDS seeds; the table gives
validation and test accuracy (mean and spread) and seconds per epoch, against the base trained with the
same seeds. A second part asks whether a trial on a quarter of the training split ranks configurations as
the full split does (the premise of multi-fidelity on the subset size). Run through bench/run.py.
"""

from __future__ import annotations

import statistics
import time

BASE = {"units": 794, "hidden_layers": 2, "dropout": 0.2919, "activation": "gelu", "optimizer": "adam",
        "learning_rate": 0.000498, "epochs": 16, "batch_size": 256, "preprocessing": "standardize"}
VARIANTS = {
    "base": {},
    "batch normalization": {"batch_norm": True},
    "weight decay 0.1": {"weight_decay": 0.1},
    "weight decay 1.0": {"weight_decay": 1.0},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "cosine schedule": {"lr_schedule": "cosine"},
    "reduce on plateau": {"lr_schedule": "plateau"},
    "best epoch's weights": {"restore_best": True},
    "shifts of 1 pixel": {"shift_pixels": 1},
    "shifts of 2 pixels": {"shift_pixels": 2},
    "XLA": {"jit_compile": True},
    "batch 1024, learning rate x2": {"batch_size": 1024, "learning_rate": 2 * BASE["learning_rate"]},
}
SEEDS = (11, 12)
FIDELITY_CONFIGS, FIDELITY_EPOCHS, FIDELITY_SHARE = 6, 10, 0.25


def row_l(data_dir: str) -> dict:
    from pipeline.config import DataConfig
    from pipeline.data import load_splits

    data = load_splits(DataConfig(dataset="fashion_mnist", data_dir=data_dir), seed=42)
    variants = {name: [_train(data, {**BASE, **change}, seed) for seed in SEEDS] for name, change in VARIANTS.items()}
    return {"base": BASE, "seeds": list(SEEDS), "variants": variants, "fidelity": _fidelity(data)}


def _train(data, values: dict, seed: int) -> dict:
    from pipeline.hyperparameters import Hyperparameters
    from pipeline.model import build_model
    from pipeline.preprocessing import fit_stats
    from pipeline.training import start_fresh, train_and_evaluate

    params = Hyperparameters.from_dict(values)
    start_fresh(seed)
    model = build_model(params, data.inputs, len(data.class_names), fit_stats(data.x_train))
    stamps: list[float] = []
    started = time.time()
    result = train_and_evaluate(model, data, params, hooks=[lambda epoch, logs: stamps.append(time.time()) and False])
    epoch_s = statistics.median(b - a for a, b in zip(stamps, stamps[1:])) if len(stamps) > 1 else stamps[0] - started
    return {"val": result.final("val_accuracy"), "test": result.test_accuracy, "epoch_s": epoch_s,
            "seconds": time.time() - started, "kept_epoch": result.kept_epoch}


def _fidelity(data) -> dict:
    """Configurations drawn at random from the default space, each trained FIDELITY_EPOCHS epochs on the
    full training split and on a stratified quarter of it: do the quarter's scores rank them the same?"""
    import optuna
    from scipy.stats import spearmanr

    from pipeline.config import load_sweep
    from pipeline.data.split import stratified_split
    from pipeline.hyperparameters import suggest_params

    space = load_sweep("sweeps/fashion_mnist.yaml").search_space
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    _, x_part, _, y_part = stratified_split(data.x_train, data.y_train, FIDELITY_SHARE, 0, "fidelity", "share")
    quarter = type(data)(x_part, y_part, data.x_val, data.y_val, data.x_test, data.y_test, data.class_names,
                         data.source)
    rows = []
    for _ in range(FIDELITY_CONFIGS):
        values = suggest_params(study.ask(), space).replace(epochs=FIDELITY_EPOCHS).as_dict()
        rows.append({"params": values, "full": _train(data, values, 0), "quarter": _train(quarter, values, 0)})
    rho = spearmanr([r["full"]["val"] for r in rows], [r["quarter"]["val"] for r in rows]).statistic
    time_ratio = sum(r["quarter"]["seconds"] for r in rows) / sum(r["full"]["seconds"] for r in rows)
    return {"rows": rows, "spearman": float(rho), "time_ratio": time_ratio, "share": FIDELITY_SHARE,
            "epochs": FIDELITY_EPOCHS}


def render_l(r: dict) -> list[str]:
    base = r["variants"]["base"]
    base_val, base_test = (statistics.mean(run[k] for run in base) for k in ("val", "test"))
    lines = ["## l. Training levers, one at a time", "",
             f"The base is row h's winner before the levers ({_describe(r['base'])}), trained by the "
             "pipeline's own model builder and training loop on the full split with seeds "
             f"{', '.join(map(str, r['seeds']))}; each variant changes "
             "one setting. Differences are against the base with the same seeds. With two seeds, a difference "
             "under about 0.4 points is within seed noise (row h before the levers: ±0.36 points).", "",
             "| variant | validation | test | test vs base (points) | s/epoch |", "|---|---|---|---|---|"]
    for name, runs in r["variants"].items():
        val = [run["val"] for run in runs]
        test = [run["test"] for run in runs]
        lines.append(f"| {name} | {_mean_sd(val)} | {_mean_sd(test)} | "
                     f"{100 * (statistics.mean(test) - base_test):+.2f} | "
                     f"{statistics.median(run['epoch_s'] for run in runs):.2f} |")
    f = r["fidelity"]
    lines += ["", f"Multi-fidelity on the subset size: {len(f['rows'])} configurations drawn at random from the "
              f"default space, {f['epochs']} epochs each, on the full training split and on a stratified "
              f"{100 * f['share']:.0f}% of it. Spearman rank correlation of their validation accuracies: "
              f"**{f['spearman']:.2f}**; the quarter took {100 * f['time_ratio']:.0f}% of the time.", "",
              f"_Base validation {base_val:.4f}, test {base_test:.4f}._", ""]
    return lines


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _describe(values: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())
