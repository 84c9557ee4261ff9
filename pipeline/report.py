"""Human-readable views of a study: the end-of-sweep summary, the export summary, the trials table."""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pandas as pd

from pipeline import keys, listing, objectives, stores, tracking
from pipeline.config import QUANTITIES, TASK_OBJECTIVES, TASK_TEST_METRICS
from pipeline.errors import BadInputError
from pipeline.study import has_best

# What `sweep report` leads with: which trial and how it ended, then how well it did (result_metrics).
LEAD = ("best", "trial", "state")
SWEEP_SUFFIXES, STORE_SUFFIXES = (".yaml", ".yml"), (".journal", ".db", ".sqlite")
# How an earlier `sweep report` or `sweep list` (which --out may replace) begins where it is no table's header.
REPORT_FIRST_LINES = ("Same in every trial:", f"{listing.NO_STUDIES} ")
NO_TRIALS = re.compile(r"Study '.*' has no trials yet\.")
FIRST_LINE_MAX = 1 << 16  # bytes read to find a file's first line


@dataclass
class SweepOutcome:
    """What a `sweep run` did, for the summary."""

    study_name: str
    storage: str
    tracking_uri: str
    parent_run_id: str | None
    new_trials: int
    finished_trials: int
    best: optuna.trial.FrozenTrial | None
    message: str = ""
    stopped_by: int | None = None  # the signal that stopped the sweep
    no_best: str = "No trial has completed yet."  # said when `best` is None
    died: tuple[str, ...] = ()  # trials failed during the command as their process died (pipeline.supervisor)
    summary: str = field(default="", repr=False)  # format_summary's text, which printing the outcome gives
    confirmation: "ConfirmationOutcome | None" = None  # the confirmation the sweep file asked for (study.confirm)

    def __str__(self) -> str:
        return "\n\n".join(filter(None, [self.summary, self.confirmation and str(self.confirmation)]))

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        """A notebook shows the summary, not the dataclass (whose best trial alone is a page)."""
        printer.text(str(self))


@dataclass
class ConfirmationOutcome:
    """What a confirmation found: its configurations, best mean first (pipeline.confirmation.Confirmed)."""

    study_name: str
    results: list
    differs_from_raw: bool  # the confirmed winner is not the single best trial
    parent_run_id: str | None
    stopped_by: int | None = None
    summary: str = field(default="", repr=False)  # format_confirmation's text, which printing the outcome gives

    def __str__(self) -> str:
        return self.summary

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))


def result_metrics(config) -> tuple[str, ...]:
    """What a trial's run says of how well it did, as `sweep report` and the summary show it: the study's metric,
    the task's first validation metric, and the task's test metrics, the headline first (classification:
    val_accuracy, test_accuracy, test_loss; regression: val_rmse, test_rmse, test_mae, test_r2)."""
    return tuple(dict.fromkeys([config.study.metric, next(iter(TASK_OBJECTIVES[config.task])),
                                *TASK_TEST_METRICS[config.task]]))


def format_confirmation(outcome: ConfirmationOutcome, config) -> str:
    from pipeline import confirmation

    if not outcome.results:
        return f"Study '{outcome.study_name}': nothing confirmed yet."
    winner, metric = outcome.results[0], config.study.metric
    choice = ("differs from the single best trial" if outcome.differs_from_raw
              else "is the single best trial's configuration")
    return "\n".join([
        f"Confirmation of study '{outcome.study_name}' ({len(winner.values)} seeds per configuration):",
        confirmation.table(outcome.results, metric, config.test_metric),
        f"Winner: trial {winner.trial_number}, {metric} {winner.mean:.4f} ± {winner.std:.4f}, {config.test_metric} "
        f"{winner.test_mean:.4f} ± {winner.test_std:.4f}; the confirmed choice {choice}.",
        *([f"Parent run: {outcome.parent_run_id}"] if outcome.parent_run_id else []),
    ])


def study_conclusions(study, config, width: int | None = None) -> str:
    """The confirmation table (if any) and the verdict, as `sweep report` prints them below the trials; the
    verdict's sentences wrapped to `width` (the terminal's), a table never."""
    from pipeline import confirmation, verdict

    confirmed = confirmation.of_study(study, config, config.tracking.tracking_uri)
    parts = [f"Confirmation (best mean {config.study.metric} first):\n"
             f"{confirmation.table(confirmed, config.study.metric, config.test_metric)}"] if confirmed else []
    if len(config.study.objectives) > 1:
        parts.append(pareto_listing(study, config))
    described = verdict.describe(verdict.for_study(study, confirmed, config.study.metric)).splitlines()
    indents = [len(line) - len(line.lstrip()) + 2 for line in described]
    said = [wrapped for line, indent in zip(described, indents) for wrapped in _wrapped(line, width, " " * indent)]
    return "\n\n".join([*parts, "\n".join(said)])


def format_summary(outcome: SweepOutcome, config) -> str:
    """Best trial, its params and metrics (the study's, then the task's test metrics), its run, and how to open
    the store in the MLflow UI."""
    metric = config.study.metric
    lines = [f"Study '{outcome.study_name}': {outcome.finished_trials} finished trials "
             f"({outcome.new_trials} run now) in {stores.printable(outcome.storage)}"]
    if outcome.message:
        lines.append(outcome.message)
    lines += outcome.died
    best = outcome.best
    if best is None:
        lines.append(outcome.no_best)
    else:
        run_id = best.user_attrs.get(keys.RUN_ID)
        results = tracking.run_metrics(outcome.tracking_uri, run_id) if run_id else {}
        rows = [("best trial", f"#{best.number}"), (metric, objectives.shown(objectives.value(best)))]
        rows += [(name, _fmt(results.get(name))) for name in TASK_TEST_METRICS[config.task]]
        rows += [("run id", _fmt(run_id))]
        rows += [(f"  {name}", _fmt(value)) for name, value in best.user_attrs[keys.PARAMS].items()]
        width = max(len(name) for name, _ in rows)
        lines += [f"  {name.ljust(width)}  {value}" for name, value in rows]
    if outcome.parent_run_id:
        lines.append(f"Parent run: {outcome.parent_run_id}")
    lines.append(f"Compare the trials in the MLflow UI:\n  {tracking.ui_command(outcome.tracking_uri)}")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return objectives.shown(value)
    return "-" if value is None else str(value)


def format_export(info: dict, out) -> str:
    """What `sweep export` wrote, where it is registered, and how to serve it; scored in the task's test metrics
    (test_accuracy; a regression's test_rmse, test_mae and test_r2, the first two in the label's units)."""
    registry, task = info["mlflow"], info.get("task", "classification")
    table, metrics = "columns" in info["input"], tuple(TASK_TEST_METRICS[task])
    headline, confirmed = metrics[0], info.get("confirmation")
    scored = (f"{headline} {info[headline]:.4f}" if task == "classification"
              else ", ".join(f"{name} {info[name]:.4g}" for name in metrics))
    return "\n".join([
        f"Exported trial #{info['trial_number']} of study '{info['study']}'"
        f"{' (refit on train + validation)' if info['refit'] else ''} to {out}/",
        f"  model.keras, saved_model/, metadata.json; raw {_shape(info['input'])} in, {_outputs(info)} out",
        f"  {scored} on {info['test_images']} raw test {'rows' if table else 'images'}",
        *([f"  confirmed over {confirmed['seeds']} seeds: {headline} "
           f"{confirmed[f'{headline}_mean']:.4f} ± {confirmed[f'{headline}_sd']:.4f}"] if confirmed else []),
        f"  registered as {registry['registered_model']} version {registry['version']} "
        f"(alias @{registry['alias']})",
        f"Serve it:\n  mlflow models serve -m {registry['model_uri']} --env-manager local --host 127.0.0.1 --port 5001",
        f"Predict:\n  sweep predict {out} {'rows.csv' if table else 'image.png'}",
    ])


def _outputs(info: dict) -> str:
    if "label" in info:
        return f"{info['label']} (one value, in its own units)"
    return f"{len(info['class_names'])} class probabilities"


def _shape(spec: dict) -> str:
    if "columns" in spec:
        return f"rows of {len(spec['columns'])} columns"
    return f"{'x'.join(map(str, spec['shape']))} {spec['dtype']}"


def format_trials(study, config, fmt: str, width: int | None = None) -> str:
    """`sweep report`'s trials: the full table as CSV or markdown; as text, the parameters no trial varied on
    one line above a table cut to `width` characters (the terminal's), saying what it left out."""
    table = trials_table(study, config)
    if fmt != "table":
        return format_table(table, fmt)
    if table.empty:
        return f"Study '{study.study_name}' has no trials yet.\n"
    params = [name for name in table.columns if name in _param_names(study)]
    fixed = [name for name in params if len(table) > 1 and table[name].astype(str).nunique() == 1]
    lines = _wrapped("Same in every trial: " + ", ".join(f"{name}={_fmt(table.loc[0, name])}" for name in fixed),
                     width) if fixed else []
    shown, hidden = _fitting(table.drop(columns=fixed), width, len(_lead(table, config)))
    lines.append(format_table(shown, fmt))
    if hidden:
        lines += _wrapped(f"{len(hidden)} more column(s) not shown: {', '.join(hidden)}; `--format csv` or "
                          "`--format markdown` gives them all", width)
    return "\n".join(lines) + "\n"


def _param_names(study) -> set[str]:
    return {name for t in study.trials for name in t.user_attrs.get(keys.PARAMS, t.params)}


def _wrapped(text: str, width: int | None, indent: str = "  ") -> list[str]:
    """Lines of at most `width`, broken between words only (a parameter's name=value stays whole)."""
    if not width:
        return [text]
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)


def _fitting(table: pd.DataFrame, width: int | None, keep: int) -> tuple[pd.DataFrame, list[str]]:
    """The table without as many trailing columns as it takes to fit `width` (the `keep` leading ones stay)."""
    columns = list(table.columns)
    while width and len(columns) > keep and _widest(table[columns]) > width:
        columns.pop()
    return table[columns], [name for name in table.columns if name not in columns]


def _widest(table: pd.DataFrame) -> int:
    return max(map(len, format_table(table, "table").splitlines()), default=0)


def trials_table(study, config) -> pd.DataFrame:
    """Optuna's trials joined with their MLflow runs: best first, the best one marked; the results lead (state,
    validation, test), then the parameters, what each model costs to ship, and the run."""
    rows = [{"trial": t.number, "state": t.state.name, **t.user_attrs.get(keys.PARAMS, t.params),
             **_costs(t, config), "value": objectives.value(t)} for t in study.trials]
    trials = pd.DataFrame(rows, columns=None if rows else ["trial", "state", "value"])  # a study yet to run one
    runs = tracking.trial_runs_frame(config.tracking.tracking_uri, config.experiment_name, config.study.name,
                                     {t.number: t.user_attrs.get(keys.RUN_ID) for t in study.trials},
                                     (keys.EPOCHS_RUN, *result_metrics(config)))
    table = trials.merge(runs, on="trial", how="left")
    # The study's metric as the study ranks by it (the kept epoch's, with restore_best), not its run's last epoch;
    # a pruned trial has no value, so its run's last one is shown.
    table[config.study.metric] = table["value"].astype(float).fillna(table[config.study.metric])
    maximize = objectives.maximizes(study)
    table = table.sort_values("value", ascending=not maximize, na_position="last", kind="stable")
    best = objectives.candidates(study)[0].number if has_best(study) else None
    table.insert(0, "best", ["*" if n == best else "" for n in table["trial"]])
    table = table.drop(columns=["value"]).reset_index(drop=True)
    lead = _lead(table, config)
    return table[lead + [name for name in table.columns if name not in lead]]


def _lead(table: pd.DataFrame, config) -> list[str]:
    """The columns the table leads with, as far as it has them: the trial, how it ended, how well it did."""
    return [name for name in (*LEAD, *result_metrics(config)) if name in table]


def _costs(trial, config) -> dict:
    """What the trial's model costs to ship, and (with constraints) whether it may."""
    measured = trial.user_attrs.get(keys.MEASUREMENTS, {})
    costs = {name: measured.get(key) for name, (key, _) in QUANTITIES.items()}
    return {**costs, "feasible": objectives.feasible(trial)} if config.study.constraints else costs


def pareto_listing(study, config) -> str:
    """A multi-objective study's Pareto front, as `sweep report` lists it."""
    names = config.study.objectives
    lines = [f"Pareto front ({', '.join(names)}): {len(objectives.study_front(study))} trial(s)"]
    for trial in objectives.study_front(study):
        values = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, trial.values))
        lines.append(f"  trial {trial.number}: {values}")
    return "\n".join(lines)


def format_table(table, fmt: str) -> str:
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "markdown":
        return _markdown(table)
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _markdown(table) -> str:
    """A GitHub-flavoured table (pandas' own needs the optional tabulate package)."""
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return ""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    header = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def check_report_out(out: Path) -> None:
    """--out may replace an earlier report, never a sweep file, a store or anything else that exists: a report
    written over `mlruns/optuna.journal` would destroy the study it reports on, one over `data.csv` the data it
    trained on (bad input: name another --out)."""
    if out.is_symlink() and not out.exists():  # writing would create its target wherever it points, or loop
        raise BadInputError(f"--out {out}: is a symlink to {os.readlink(out)}, which does not exist or loops back "
                            "on itself; name a real file, e.g. --out report.md")
    if not out.exists():
        return
    target = out.resolve()
    suffixes = {out.suffix.lower(), target.suffix.lower()}
    if suffixes & set(SWEEP_SUFFIXES):
        what = "a sweep file"
    elif suffixes & set(STORE_SUFFIXES) or stores.DEFAULT_FOLDER in (*out.parts, *target.parts):
        what = "a store or inside one"
    elif out.is_dir():
        return  # writing reports it: cannot write the report (Is a directory)
    elif not _is_earlier_report(out):
        what = ("a file that is not a report (its first line is none that `sweep report` or `sweep list` writes, so "
                "it is not an earlier report to replace)")
    else:
        return
    raise BadInputError(f"--out {out}: exists and is {what}; it is left as it is; name a new file or an earlier "
                        "report, e.g. --out report.md")


def _is_earlier_report(path: Path) -> bool:
    """Whether a file's first line is one `sweep report` or `sweep list` writes, in any format: their table's
    leading columns, or the line they print for no trials or no studies. A file with nothing in it holds no work
    to lose either. Only a regular file is read (a pipe or a terminal would wait for input)."""
    if not path.is_file():
        return False
    try:
        with path.open("rb") as file:
            start = file.read(FIRST_LINE_MAX)
    except OSError:
        return False
    first = start.split(b"\n", 1)[0].decode(errors="replace").rstrip("\r")
    if not start or first.startswith(REPORT_FIRST_LINES) or NO_TRIALS.fullmatch(first):
        return True
    return tuple(_header_cells(first)[:3]) in (LEAD, listing.COLUMNS[:3])


def _header_cells(line: str) -> list[str]:
    """A table's column names as the CSV (`a,b`), markdown (`| a | b |`) or text (`  a  b`) forms write them."""
    if line.startswith("|"):
        return [cell.strip() for cell in line.strip().strip("|").split("|")]
    return line.split(",") if "," in line else line.split()
