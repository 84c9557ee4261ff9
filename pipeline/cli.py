"""The `sweep` command: parses arguments and calls the pipeline; holds no logic of its own."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path

from pipeline.api import Sweep, quiet_libraries
from pipeline.config import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from pipeline.errors import BadInputError, SweepConfigError, SweepError, SweepInterrupted
from pipeline.stores import PROXY_PORT

EXIT_SIGNAL_BASE = 128  # the shell's convention: a command ended by signal N exits 128 + N (Ctrl-C: 130)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweep", description="Hyperparameter sweeps for Keras models, "
                                     "tracked in MLflow and searched with Optuna.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run or resume the sweep a YAML file describes")
    run.add_argument("sweep_file", help="path to the sweep file, e.g. sweeps/fashion_mnist.yaml, or a shipped "
                     "example's name, e.g. smoke (`sweep examples` lists them)")
    run.add_argument("--n-trials", type=int, help="total trials for the study (overrides study.n_trials)")
    run.add_argument("--timeout", type=float, help="total seconds for the study (overrides study.timeout)")
    _add_worker_options(run, "worker processes running trials side by side")
    run.set_defaults(handler=_run)

    confirm = commands.add_parser("confirm", help="retrain a finished study's top configurations with more seeds")
    confirm.add_argument("sweep_file", nargs="?", help="the sweep file (or give --study)")
    confirm.add_argument("--study", help="the study's name, instead of its sweep file")
    confirm.add_argument("--top-k", type=int, help="configurations to confirm (default study.confirm.top_k or 3)")
    confirm.add_argument("--seeds", type=int, help="seeds per configuration, the search trial included "
                         "(default study.confirm.seeds or 3)")
    _add_worker_options(confirm, "worker processes sharing the retrainings")
    confirm.set_defaults(handler=_confirm)

    compare = commands.add_parser("compare", help="two studies side by side: is the difference larger than noise?")
    compare.add_argument("studies", nargs=2, metavar="STUDY", help="a sweep file, or a study name in --storage")
    compare.add_argument("--storage", help=f"Optuna storage URL for study names (default {DEFAULT_STORAGE})")
    compare.add_argument("--tracking-uri", help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI})")
    compare.set_defaults(handler=_compare)

    export = commands.add_parser("export", help="export the best trial as a self-contained, registered model")
    export.add_argument("sweep_file", nargs="?", help="the sweep file (or give --study)")
    export.add_argument("--study", help="the study's name, instead of its sweep file")
    export.add_argument("--out", required=True, help="folder to write model.keras, saved_model/, metadata.json")
    export.add_argument("--refit", action="store_true", help="retrain the best params on train + validation")
    export.add_argument("--name", help="registered model name (default: tracking.registered_model or study)")
    export.add_argument("--force", action="store_true", help="replace an existing export in --out")
    export.add_argument("--max-latency-ms", type=float, help="only a model predicting within X ms per image (batch 1)")
    export.add_argument("--max-params", type=int, help="only a model with at most N parameters")
    export.add_argument("--max-model-mb", type=float, help="only a model whose saved file is at most Y MB")
    _add_store_options(export)
    export.add_argument("--verbose", action="store_true", help="show TensorFlow's own start-up messages")
    export.set_defaults(handler=_export)

    report = commands.add_parser("report", help="one table of a study's trials joined with their MLflow runs")
    report.add_argument("sweep_file", nargs="?", help="the sweep file (or give --study)")
    report.add_argument("--study", help="the study's name, instead of its sweep file")
    report.add_argument("--format", choices=("table", "csv", "markdown"), help="default: what --out's suffix says "
                        "(.csv, .md or .markdown), else table")
    report.add_argument("--out", type=Path, help="write to this file instead of printing")
    _add_store_options(report)
    report.set_defaults(handler=_report)

    listed = commands.add_parser("list", help="the studies in a storage: trials by state, best, confirmed, last "
                                 "activity, whether a process runs one now")
    listed.add_argument("--storage", help=f"Optuna storage URL (default {DEFAULT_STORAGE})")
    listed.add_argument("--tracking-uri", help=f"MLflow tracking URI, for the best trials' test metric (default "
                        f"{DEFAULT_TRACKING_URI})")
    listed.add_argument("--format", choices=("table", "csv", "markdown"), help="default: what --out's suffix says "
                        "(.csv, .md or .markdown), else table")
    listed.add_argument("--out", type=Path, help="write to this file instead of printing")
    listed.set_defaults(handler=_list)

    ui = commands.add_parser("ui", help="open the MLflow UI on a sweep's tracking store")
    ui.add_argument("sweep_file", nargs="?", default="sweeps/fashion_mnist.yaml", help="the sweep file")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    ui.add_argument("--port", type=int, default=5000)
    _add_store_options(ui)
    ui.set_defaults(handler=_ui, study=None)

    predict = commands.add_parser("predict", help="classify pictures, IDX files, CSV rows or .npz files (a regression "
                                  "model: predict the label's value)")
    predict.add_argument("model", help="an export folder, a .keras file, or models:/NAME@alias")
    predict.add_argument("inputs", nargs="+", type=Path, help="picture, IDX, CSV or .npz files")
    predict.add_argument("--json", action="store_true", help="print JSON with every class probability (a regression: "
                         "the label's value)")
    predict.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help="registry for models:/ URIs")
    predict.add_argument("--verbose", action="store_true", help="show TensorFlow's own start-up messages")
    predict.set_defaults(handler=_predict)

    examples = commands.add_parser("examples", help="list the example sweeps shipped with the tool, or copy them out")
    examples.add_argument("--out", type=Path, help="copy them, and their data, into this folder (sweeps: the table "
                          "example's data path, sweeps/data/wine.csv, then works from here)")
    examples.set_defaults(handler=_examples)

    init = commands.add_parser("init", help="inspect a dataset and write a commented sweep file sized to it")
    init.add_argument("data", help="a folder of IDX files or of class folders of pictures, a CSV or Parquet table, "
                      "an .npz file, or a Keras dataset's name (fashion_mnist, mnist, cifar10, cifar100)")
    init.add_argument("--out", help="the sweep file to write (default sweeps/NAME.yaml, NAME the data's)")
    init.add_argument("--label", help="tables: the column to predict (default: one named label, target, class, "
                      "y, ..., else the last)")
    init.add_argument("--force", action="store_true", help="replace an existing sweep file")
    init.add_argument("--no-timing", action="store_true", help="write a default budget instead of timing an epoch "
                      "of the default model on this machine (faster: TensorFlow is not loaded)")
    init.set_defaults(handler=_init)

    proxy = commands.add_parser("storage-proxy", help="serve a database's studies to many machines through one "
                                "gRPC proxy; they pass --storage grpc://HOST:PORT")
    proxy.add_argument("--storage", required=True, help="the database it fronts, e.g. postgresql://user@host/db")
    proxy.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; 0.0.0.0 for "
                       "other machines)")
    proxy.add_argument("--port", type=int, default=PROXY_PORT, help=f"port to listen on (default {PROXY_PORT})")
    proxy.set_defaults(handler=_storage_proxy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return args.handler(args)
    except SweepError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SweepInterrupted as stopped:  # the workers have ended their trials: say what was done
        print(stopped.outcome)
        return stopped.exit_code
    except KeyboardInterrupt:  # Ctrl-C before a sweep's own handling is in place (start-up, export, report)
        return EXIT_SIGNAL_BASE + signal.SIGINT
    except BrokenPipeError:  # `sweep list | head -1`: the reader has gone, as a shell tool would, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit must not fail
        return EXIT_SIGNAL_BASE + signal.SIGPIPE


def _add_worker_options(parser: argparse.ArgumentParser, workers_help: str) -> None:
    """What the commands that train in worker processes take: workers, stores, progress, verbosity."""
    parser.add_argument("--workers", type=int, default=1, help=workers_help)
    _add_store_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own start-up messages")


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help=f"Optuna storage URL (default {DEFAULT_STORAGE})")
    parser.add_argument("--tracking-uri", help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI})")
    parser.add_argument("--data-dir", help="the data's folder or file (overrides data.data_dir); for Keras' "
                        "datasets, a folder of their files to use offline")


def _sweep(args: argparse.Namespace, **overrides) -> Sweep:
    """The sweep a command names: its sweep file, or --study NAME (the sweep file the study keeps)."""
    common = dict(storage=args.storage, tracking_uri=args.tracking_uri, data_dir=args.data_dir,
                  workers=getattr(args, "workers", 1), verbose=getattr(args, "verbose", False))
    if getattr(args, "study", None):
        if args.sweep_file:
            raise SweepConfigError("give either a sweep file or --study NAME, not both")
        return Sweep.from_study(args.study, **common)
    if args.sweep_file:
        return Sweep.from_file(args.sweep_file, **common, **overrides)
    raise SweepConfigError("give a sweep file or --study NAME")


def _run(args: argparse.Namespace) -> int:
    print(_sweep(args, n_trials=args.n_trials, timeout=args.timeout).run(progress=not args.no_progress))
    return 0


def _confirm(args: argparse.Namespace) -> int:
    print(_sweep(args).confirm(args.top_k, args.seeds, progress=not args.no_progress))
    return 0


def _compare(args: argparse.Namespace) -> int:
    first, second = (Sweep.from_spec(spec, storage=args.storage, tracking_uri=args.tracking_uri)
                     for spec in args.studies)
    comparison = first.compare(second)
    if comparison.warning:
        print(f"sweep: warning: {comparison.warning}", file=sys.stderr)
    print(comparison.text)
    return 0


def _export(args: argparse.Namespace) -> int:
    print(_sweep(args).export(args.out, refit=args.refit, name=args.name, force=args.force,
                              max_latency_ms=args.max_latency_ms, max_params=args.max_params,
                              max_model_mb=args.max_model_mb))
    return 0


def _report(args: argparse.Namespace) -> int:
    sweep = _sweep(args)
    if args.out:
        from pipeline.report import check_report_out

        check_report_out(args.out)
    # A terminal's width (or COLUMNS); a file, a pipe or --out get every column.
    width = None if args.out else shutil.get_terminal_size((0, 0)).columns or None
    text = sweep.report(_format(args), width)
    if args.out:
        _write_report(args.out, text)
    else:
        print(text)
    return 0


def _format(args: argparse.Namespace) -> str:
    """--format, else the one --out's suffix names (a report into `trials.csv` is CSV), else a text table."""
    if args.format:
        return args.format
    suffix = args.out.suffix.lower() if args.out else ""
    return {".csv": "csv", ".md": "markdown", ".markdown": "markdown"}.get(suffix, "table")


def _write_report(out: Path, text: str) -> None:
    try:
        out.write_text(text)
    except OSError as exc:
        raise BadInputError(f"--out {out}: cannot write the report ({exc.strerror}); give a file path in an "
                            "existing folder") from None


def _ui(args: argparse.Namespace) -> int:
    from pipeline.ui import serve_ui

    return serve_ui(_sweep(args).config, args.host, args.port)


def _predict(args: argparse.Namespace) -> int:
    from pipeline.tensorflow_setup import load_tensorflow

    load_tensorflow(args.verbose)
    from pipeline.predict import format_predictions, load_model, predict_files

    model = load_model(args.model, args.tracking_uri)
    print(format_predictions(predict_files(model, args.inputs), args.json))
    return 0


def _storage_proxy(args: argparse.Namespace) -> int:
    from pipeline.storages.proxy_server import serve

    return serve(args.storage, args.host, args.port)


def _list(args: argparse.Namespace) -> int:
    from pipeline import api
    from pipeline.listing import format_studies
    from pipeline.report import check_report_out

    if args.out:
        check_report_out(args.out)
    frame = api.list_studies(args.storage, args.tracking_uri)
    for warning in frame.attrs["warnings"]:
        print(f"sweep: warning: {warning}", file=sys.stderr)
    text = format_studies(frame, _format(args), args.storage or DEFAULT_STORAGE)
    if args.out:
        _write_report(args.out, text)
    else:
        print(text, end="")
    return 0


def _init(args: argparse.Namespace) -> int:
    from pipeline.api import init_sweep

    print(init_sweep(args.data, out=args.out, label=args.label, force=args.force, timing=not args.no_timing))
    return 0


def _examples(args: argparse.Namespace) -> int:
    from pipeline import examples

    if args.out is None:
        print(examples.describe())
        return 0
    copied = examples.copy_to(args.out)
    print(f"Copied {len(copied)} files to {args.out}/; run one: sweep run {args.out / 'smoke.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
