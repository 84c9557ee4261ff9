"""`sweep init DATA`: inspect a dataset through the loaders `sweep run` uses, and write a commented sweep file
sized to it, which `sweep run` takes unchanged.

What it infers (the source, the inputs, the classes or the numbers, the task, a table's label) is said in the
file's header and in the summary it prints. The data is loaded and split as `sweep run` does, so data that
`sweep run` would refuse is refused here, with the same error. The budget comes from a timed epoch of the
file's middle model on this machine. This module holds the steps in order and where the file goes; inspection,
space, budget and render each hold one step.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from pipeline import stores
from pipeline.config import DEFAULT_STORAGE, parse_sweep_text
from pipeline.data import KERAS_DATASETS
from pipeline.data.tables import READERS
from pipeline.errors import BadInputError
from pipeline.scaffold.budget import timed_budget
from pipeline.scaffold.inspection import inspect
from pipeline.scaffold.render import render
from pipeline.scaffold.space import family_for, search_space


@dataclass(frozen=True)
class Scaffold:
    """The sweep file written: where, its text, and what was inferred (warnings start with "warning:")."""

    path: Path
    text: str
    notes: tuple[str, ...]

    def __str__(self) -> str:
        return "\n".join([*self.notes, f"Wrote {self.path}", f"Run it: sweep run {shlex.quote(str(self.path))}"])


def init_sweep(data: str | Path, out: str | Path | None, label: str | None, force: bool, timing: bool) -> Scaffold:
    """Inspect `data`, size a search to it, and write the sweep file (default sweeps/NAME.yaml)."""
    data, out = _checked_arguments(data, out, label)
    if label is not None and data.suffix.lower() not in READERS:
        raise BadInputError(f"--label {label}: names a table's column; {data} is not a table "
                            f"({', '.join(READERS)})")
    name, taken = _free_name(_study_name(data))
    path = _checked_out(out or Path("sweeps") / f"{name}.yaml", force)
    found = inspect(data, label, name)
    found = dataclasses.replace(found, notes=(*found.notes, *taken))  # said in the file's header too
    family, why = family_for(found.splits)
    chosen = search_space(found.splits, family)
    text = render(found, family, why, chosen, None)
    budget = timed_budget(parse_sweep_text(text, path), found.splits) if timing else None
    text = render(found, family, why, chosen, budget)
    parse_sweep_text(text, path)  # what `sweep run` will read, checked before it is written
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    notes = [*found.notes, f"Model: {family} ({why})"]
    notes += [f"Budget: {budget.comment}" if budget else "Budget: not timed (--no-timing); a plain default written"]
    return Scaffold(path, text, tuple(notes))


def _checked_arguments(data, out, label) -> tuple[Path, Path | None]:
    """The API passes its arguments through unchanged: a wrong type or an empty path is refused naming the
    argument (Path("") would be the current folder, inspected without the user asking)."""
    if not isinstance(data, (str, os.PathLike)):
        raise BadInputError(f"init_sweep(data={data!r}): give the data's path as a str or pathlib.Path (a folder, a "
                            "CSV or Parquet table, an .npz file) or a Keras dataset's name")
    if not str(data).strip():
        raise BadInputError("data '': an empty path; give the data's path (a folder, a table, an .npz file) or "
                            "a Keras dataset's name; '.' for the current folder")
    if out is not None and (not isinstance(out, (str, os.PathLike)) or not str(out).strip()):
        raise BadInputError(f"init_sweep(out={out!r}): give the sweep file to write as a str or pathlib.Path "
                            "(NAME.yaml), or None for sweeps/NAME.yaml")
    if label is not None and not isinstance(label, str):
        raise BadInputError(f"init_sweep(label={label!r}): give a table's column name as a str, or None")
    return Path(data), None if out is None else Path(out)


def _free_name(name: str) -> tuple[str, list[str]]:
    """`name`, or NAME-2, NAME-3... when the default storage (the one the written file uses) already holds a
    study of that name: `sweep run` refuses another dataset under a study's name. Read only, and only when the
    journal is there: init creates no store."""
    url = stores.resolve_uri(DEFAULT_STORAGE, create=False)
    journal = stores.local_path(url)
    if journal is None or not journal.is_file():
        return name, []
    import optuna

    from pipeline.study import optuna_storage, storage_errors

    with storage_errors(url):
        existing = set(optuna.get_all_study_names(optuna_storage(url)))
    if name not in existing:
        return name, []
    free = next(f"{name}-{n}" for n in range(2, len(existing) + 3) if f"{name}-{n}" not in existing)
    shown = os.path.relpath(journal)
    return free, [f"study {name!r} exists in {shown} (other data?): this file's study is {free!r}"]


def _study_name(data: Path) -> str:
    """The data's name as a study name: lower case, runs of other characters as one '-'."""
    stem = data.resolve().name if data.is_dir() else data.name if str(data) in KERAS_DATASETS else data.stem
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "sweep"


def _checked_out(out: Path, force: bool) -> Path:
    """A .yaml path to write; an existing file is replaced only with --force, and never one that is not YAML."""
    if out.is_dir():
        raise BadInputError(f"--out {out}: is a folder; name the sweep file to write, e.g. {out / 'sweep.yaml'}")
    if out.suffix.lower() not in (".yaml", ".yml"):
        kept = "; an existing file that is not one is never replaced" if out.exists() else ""
        raise BadInputError(f"--out {out}: a sweep file is named NAME.yaml (or .yml){kept}")
    if out.exists() and not force:
        raise BadInputError(f"{out}: exists; pass --force to replace it, or --out another file")
    return out
