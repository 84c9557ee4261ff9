"""The `sweep` command: parses arguments and calls the pipeline; holds no logic of its own."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.config import DEFAULT_STORAGE, DEFAULT_TRACKING_URI, load_sweep, with_overrides
from pipeline.errors import SweepConfigError, SweepError

EXIT_INTERRUPTED = 130  # the shell's convention for a command ended by Ctrl-C


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweep", description="Hyperparameter sweeps for Keras models, "
                                     "tracked in MLflow and searched with Optuna.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run or resume the sweep a YAML file describes")
    run.add_argument("sweep_file", help="path to the sweep file, e.g. sweeps/fashion_mnist.yaml")
    run.add_argument("--n-trials", type=int, help="total trials for the study (overrides study.n_trials)")
    run.add_argument("--timeout", type=float, help="total seconds for the study (overrides study.timeout)")
    run.add_argument("--workers", type=int, default=1,
                     help="worker processes sharing the study (needs a journal:/// or database --storage)")
    _add_store_options(run)
    run.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    run.set_defaults(handler=_run)

    export = commands.add_parser("export", help="export the best trial as a self-contained, registered model")
    export.add_argument("sweep_file", nargs="?", help="the sweep file (or give --study)")
    export.add_argument("--study", help="the study's name, instead of its sweep file")
    export.add_argument("--out", required=True, help="folder to write model.keras, saved_model/, metadata.json")
    export.add_argument("--refit", action="store_true", help="retrain the best params on train + validation")
    export.add_argument("--name", help="registered model name (default: tracking.registered_model or study)")
    export.add_argument("--force", action="store_true", help="replace an existing export in --out")
    _add_store_options(export)
    export.set_defaults(handler=_export)

    report = commands.add_parser("report", help="one table of a study's trials joined with their MLflow runs")
    report.add_argument("sweep_file", nargs="?", help="the sweep file (or give --study)")
    report.add_argument("--study", help="the study's name, instead of its sweep file")
    report.add_argument("--format", choices=("table", "csv", "markdown"), default="table")
    report.add_argument("--out", type=Path, help="write to this file instead of printing")
    _add_store_options(report)
    report.set_defaults(handler=_report)

    ui = commands.add_parser("ui", help="open the MLflow UI on a sweep's tracking store")
    ui.add_argument("sweep_file", nargs="?", default="sweeps/fashion_mnist.yaml", help="the sweep file")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    ui.add_argument("--port", type=int, default=5000)
    _add_store_options(ui)
    ui.set_defaults(handler=_ui, study=None)

    predict = commands.add_parser("predict", help="classify PNG/JPEG images, IDX files or Kaggle CSVs")
    predict.add_argument("model", help="an export folder, a .keras file, or models:/NAME@alias")
    predict.add_argument("inputs", nargs="+", type=Path, help="image, IDX or CSV files")
    predict.add_argument("--json", action="store_true", help="print JSON with every class probability")
    predict.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help="registry for models:/ URIs")
    predict.set_defaults(handler=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.owns_process = argv is None  # only the `sweep` program itself may replace its process (run's recycling)
    _quiet_libraries()
    try:
        return args.handler(args)
    except SweepError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help=f"Optuna storage URL (default {DEFAULT_STORAGE})")
    parser.add_argument("--tracking-uri", help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI})")
    parser.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX .gz files or Kaggle CSVs")


def _config(args: argparse.Namespace, **extra):
    overrides = dict(storage=args.storage, tracking_uri=args.tracking_uri, data_dir=args.data_dir, **extra)
    if getattr(args, "study", None):
        if args.sweep_file:
            raise SweepConfigError("give either a sweep file or --study NAME, not both")
        from pipeline.study import load_study_config

        config = load_study_config(args.storage or DEFAULT_STORAGE, args.study)
    elif args.sweep_file:
        config = load_sweep(args.sweep_file)
    else:
        raise SweepConfigError("give a sweep file or --study NAME")
    return with_overrides(config, **overrides)


def _run(args: argparse.Namespace) -> int:
    config = _config(args, n_trials=args.n_trials, timeout=args.timeout)
    if args.workers < 1:
        raise SweepConfigError(f"--workers: must be at least 1, got {args.workers}")
    from pipeline.report import format_summary
    from pipeline.runner import continue_in_fresh_process, run_sweep

    outcome = run_sweep(config, show_progress=not args.no_progress, workers=args.workers,
                        may_recycle=args.owns_process)
    if outcome.recycle:
        print(f"sweep: this process ran its {config.study.trials_per_process} trials (study.trials_per_process); "
              "the study continues in a fresh one, releasing TensorFlow's per-model memory", flush=True)
        continue_in_fresh_process(outcome)
    print(format_summary(outcome, config.study.metric))
    return EXIT_INTERRUPTED if outcome.interrupted else 0


def _export(args: argparse.Namespace) -> int:
    config = _config(args)
    from pipeline.export import export_best
    from pipeline.report import format_export

    info = export_best(config, Path(args.out), refit=args.refit, name=args.name, force=args.force)
    print(format_export(info, Path(args.out)))
    return 0


def _report(args: argparse.Namespace) -> int:
    config = _config(args)
    from pipeline.report import format_table, trials_table
    from pipeline.study import load_existing_study

    text = format_table(trials_table(load_existing_study(config.study.storage, config.study.name), config),
                        args.format)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


def _ui(args: argparse.Namespace) -> int:
    from pipeline.ui import serve_ui

    return serve_ui(_config(args), args.host, args.port)


def _predict(args: argparse.Namespace) -> int:
    from pipeline.predict import format_predictions, load_model, predict_files

    model = load_model(args.model, args.tracking_uri)
    print(format_predictions(predict_files(model, args.inputs), args.json))
    return 0


def _quiet_libraries() -> None:
    """TensorFlow's C++ start-up chatter and MLflow's per-download bars bury our own progress output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


if __name__ == "__main__":
    sys.exit(main())
