"""The example sweeps shipped with the tool: run by bare name (`sweep run smoke`), listed, and copied out.

In a checkout they are the repository's sweeps/ folder, where a user edits them; a wheel ships the same
files as pipeline/sweeps/ (pyproject.toml maps the one onto the other), so an install has them too. Their
relative data paths (sweeps/data/wine.csv) are written from the folder that holds sweeps/, and are found
from there whatever the working folder; their builders (sweeps/models/) are named relative to the sweep file,
as any builder is, so they are found beside it wherever the examples are copied.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pipeline
from pipeline.errors import BadInputError, SweepConfigError

SUFFIX = ".yaml"
DATA = "data"  # the examples' own data, beside them
MODELS = "models"  # the examples' own networks (model.builder), beside them


def folder() -> Path:
    """pipeline/sweeps/ in an installed wheel, else the checkout's sweeps/ (an editable install)."""
    package = Path(pipeline.__file__).parent
    installed = package / "sweeps"
    return installed if installed.is_dir() else package.parent / "sweeps"


def names() -> list[str]:
    return sorted(p.stem for p in folder().glob(f"*{SUFFIX}"))


def is_bare_name(spec: str) -> bool:
    """`smoke`, not `smoke.yaml`, `./smoke` or a file that is there: the user means a shipped example (a
    folder of that name, say the project's own `table/`, cannot be a sweep file)."""
    path = Path(spec)
    return not path.suffix and len(path.parts) == 1 and "/" not in spec and not path.is_file()


def locate(spec: str) -> Path:
    """The shipped example a bare name means, or an error listing the ones there are."""
    path = folder() / f"{spec}{SUFFIX}"
    if not path.is_file():
        raise SweepConfigError(f"{spec}: no such sweep file, and no shipped example of that name; the examples "
                               f"are {', '.join(names())} (`sweep examples` describes them)")
    return path


def with_own_data(config):
    """An example's relative data path, found from the folder that holds sweeps/ (not the working folder)."""
    data_dir = config.data.data_dir
    if data_dir is None or Path(data_dir).is_absolute():
        return config
    found = str(folder().parent / data_dir)
    return dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=found))


def describe() -> str:
    """Each example with the first line of its own comment, and how to run or copy them."""
    width = max(len(name) for name in names())
    lines = [f"  {name.ljust(width)}  {_summary(folder() / f'{name}{SUFFIX}')}" for name in names()]
    return "\n".join([f"Example sweeps (in {folder()}):", *lines,
                      "Run one by name: sweep run smoke; copy them out to edit: sweep examples --out sweeps"])


def _summary(path: Path, width: int = 100) -> str:
    """The first sentence of the comment a sweep file opens with, cut to `width`."""
    lines = path.read_text().splitlines()
    comment = " ".join(line.lstrip("# ").strip() for line in lines[:next(
        (i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))])
    sentence = comment.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= width else sentence[:width - 3].rstrip() + "..."


def copy_to(out: Path) -> list[Path]:
    """Copy every example, and their data, into `out`; refuse before copying anything if a file would be
    overwritten (the user's edits of an earlier copy)."""
    source = folder()
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file() and _shipped(p, source))
    _refuse_unusable(out)
    clashes = [str(out / f) for f in files if (out / f).exists()]
    if clashes:
        raise BadInputError(f"{clashes[0]}: already exists ({len(clashes)} of the {len(files)} files do); "
                            "choose another --out, or move your copies aside first")
    for name in files:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, out / name)
    return [out / f for f in files]


def _refuse_unusable(out: Path) -> None:
    """Before anything is copied: --out, and the folders made above it, must be folders or missing, and no
    symlink on the way may point at nothing or at itself (`ln -s mlruns mlruns`)."""
    for path in (out, *out.parents):
        if path.is_symlink() and not path.exists():
            raise BadInputError(f"{path}: is a symlink to {os.readlink(path)}, which does not exist or loops back "
                                "on itself; remove the link or give --out a real folder")
        if path.exists() and not path.is_dir():
            raise BadInputError(f"{path}: is a file; give --out a folder")


def _shipped(path: Path, source: Path) -> bool:
    """The sweep files, their data and their builders: what the wheel ships, whatever else lies in a checkout's
    sweeps/ (Python's caches, say)."""
    relative = path.relative_to(source)
    return ((len(relative.parts) == 1 and path.suffix == SUFFIX) or (relative.parts[:-1] == (DATA,)
            and path.suffix == ".csv") or (relative.parts[:-1] == (MODELS,) and path.suffix == ".py"))
