"""`sweep init DATA`: inspect a dataset through the loaders `sweep run` uses, and write a commented sweep file
sized to it, which `sweep run` takes unchanged.

What it infers (the source, the inputs, the classes or the numbers, the task, a table's label) is said in the
file's header and in the summary it prints. The data is loaded and split as `sweep run` does, so data that
`sweep run` would refuse is refused here, with the same error. The budget comes from a timed epoch of the
file's middle model on this machine. This module holds the steps in order and where the file goes; inspection,
space, budget and render each hold one step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import parse_sweep_text
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
        return "\n".join([*self.notes, f"Wrote {self.path}", f"Run it: sweep run {self.path}"])


def init_sweep(data: Path, out: Path | None, label: str | None, force: bool, timing: bool) -> Scaffold:
    """Inspect `data`, size a search to it, and write the sweep file (default sweeps/NAME.yaml)."""
    if label is not None and data.suffix.lower() not in READERS:
        raise BadInputError(f"--label {label}: names a table's column; {data} is not a table "
                            f"({', '.join(READERS)})")
    name = _study_name(data)
    path = _checked_out(out or Path("sweeps") / f"{name}.yaml", force)
    found = inspect(data, label, name)
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
