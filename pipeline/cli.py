"""The `sweep` command: parses arguments and calls the pipeline; holds no logic of its own."""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.config import SweepConfigError, load_sweep, with_overrides

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweep", description="Hyperparameter sweeps for Keras models, "
                                     "tracked in MLflow and searched with Optuna.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run or resume the sweep a YAML file describes")
    run.add_argument("sweep_file", help="path to the sweep file, e.g. sweeps/fashion_mnist.yaml")
    run.add_argument("--n-trials", type=int, help="total trials for the study (overrides study.n_trials)")
    run.add_argument("--timeout", type=float, help="total seconds for the study (overrides study.timeout)")
    run.add_argument("--storage", help="Optuna storage URL (default sqlite:///mlruns/optuna.db)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlruns/mlflow.db)")
    run.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX .gz files or Kaggle CSVs")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    run.set_defaults(handler=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SweepConfigError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    config = with_overrides(load_sweep(args.sweep_file), n_trials=args.n_trials, timeout=args.timeout,
                            storage=args.storage, tracking_uri=args.tracking_uri, data_dir=args.data_dir)
    _quiet_tensorflow()
    from pipeline.data import DataError
    from pipeline.report import format_summary
    from pipeline.study import StudyError, run_sweep
    from pipeline.tracking import TrackingError

    try:
        outcome = run_sweep(config, show_progress=not args.no_progress)
    except DataError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (StudyError, TrackingError) as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(outcome, config.study.metric))
    return 0


def _quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up chatter buries the progress bar; keep warnings and errors only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


if __name__ == "__main__":
    sys.exit(main())
