"""Every bad input tried on the tool, as one table: each gets one `sweep: error:` line naming the file, key,
URL or column and what to do, the right exit status, and leaves nothing behind in either store.

Exit status 2 is bad input (what the user typed or pointed at); 1 is a store or study that cannot be used.
The ones that held up when the tool was first attacked are here too, so they stay held.
"""

from __future__ import annotations

import gzip
import os
import struct
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
import pytest
import yaml

from pipeline import cli
from pipeline.processes import free_port

from conftest import SWEEPS, write_sweep

POSTGRES = os.environ.get("SWEEP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@dataclass(frozen=True)
class Case:
    make: Callable[[Path, Path], list[str]]  # (tmp_path, data_dir) -> the command's arguments
    status: int
    message: str  # a fragment of the one error line
    leaves: tuple[str, ...] = ()  # what may be in tmp_path afterwards besides what `make` wrote


def tiny(tmp: Path, data_dir: Path | None = None, **changes) -> Path:
    """sweeps/smoke.yaml with stores in tmp, one quick trial."""
    settings = {"study__storage": f"sqlite:///{tmp}/optuna.db", "tracking__tracking_uri": f"sqlite:///{tmp}/mlflow.db",
                "study__n_trials": 1, "data__subset": 400, "data__test_subset": 100}
    if data_dir is not None:
        settings["data__data_dir"] = str(data_dir)
    return write_sweep(tmp, **{**settings, **changes})


def raw_yaml(tmp: Path, text: str) -> list[str]:
    path = tmp / "bad.yaml"
    path.write_text(text)
    return ["run", str(path)]


def write_idx(folder: Path, x_train, y_train, x_test, y_test) -> Path:
    """The four Fashion-MNIST IDX files, gzipped, for arrays of our choosing."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in (("train-images-idx3-ubyte", x_train), ("train-labels-idx1-ubyte", y_train),
                        ("t10k-images-idx3-ubyte", x_test), ("t10k-labels-idx1-ubyte", y_test)):
        header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
        with gzip.open(folder / f"{name}.gz", "wb") as handle:
            handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return folder


def small_idx(tmp: Path, per_class: int = 30, test_per_class: int = 5, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (10 * per_class, 28, 28)), "y_train": np.repeat(np.arange(10), per_class),
              "x_test": rng.integers(0, 256, (10 * test_per_class, 28, 28)),
              "y_test": np.repeat(np.arange(10), test_per_class)}
    arrays.update(override)
    return write_idx(tmp / "data", **arrays)


def huge_png(path: Path, side: int = 15000) -> Path:
    """A PNG whose header says side x side pixels (the pixel data is never reached)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def changed_space(tmp: Path, data_dir: Path) -> list[str]:
    """A study whose `units` was drawn on a log scale, resumed with a plain range and a new parameter."""
    storage = f"sqlite:///{tmp}/optuna.db"
    study = optuna.create_study(study_name="fashion-mnist-smoke", storage=storage, direction="maximize")
    units = optuna.distributions.IntDistribution(16, 128, log=True)
    study.add_trial(optuna.trial.create_trial(params={"units": 32}, distributions={"units": units}, value=0.5))
    path = tiny(tmp, data_dir, search_space__units={"type": "int", "low": 16, "high": 128},
                search_space__hidden_layers={"type": "int", "low": 1, "high": 2})
    return ["run", str(path)]


def missing_postgres_database(tmp: Path, data_dir: Path) -> list[str]:
    return ["run", str(tiny(tmp, data_dir)), "--storage", f"{POSTGRES}/no_such_db_{uuid.uuid4().hex[:8]}"]


def in_folder_with_mlruns_file(tmp: Path, data_dir: Path) -> list[str]:
    (tmp / "mlruns").write_text("not a folder")
    path = write_sweep(tmp, data__data_dir=str(data_dir))
    os.chdir(tmp)
    return ["run", str(path)]


def damaged_study_database(tmp: Path, data_dir: Path) -> list[str]:
    (tmp / "optuna.db").write_bytes(b"SQLite format 3\x00" + b"x" * 100)
    return ["run", str(tiny(tmp, data_dir))]


def damaged_idx(tmp: Path, data_dir: Path) -> list[str]:
    folder = small_idx(tmp)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b damaged")
    return ["run", str(tiny(tmp, folder))]


def report_to(tmp: Path, out: Path) -> list[str]:
    """A study with one finished trial (made directly, no training), reported to `out`."""
    storage = f"sqlite:///{tmp}/optuna.db"
    study = optuna.create_study(study_name="reported", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    study.set_user_attr("sweep_file", (SWEEPS / "smoke.yaml").read_text().replace("fashion-mnist-smoke", "reported"))
    return ["report", "--study", "reported", "--storage", storage, "--tracking-uri", f"sqlite:///{tmp}/mlflow.db",
            "--out", str(out)]


def junk_png(tmp: Path, model: Path) -> list[str]:
    (tmp / "junk.png").write_bytes(b"not an image")
    return ["predict", str(model), str(tmp / "junk.png")]


def kaggle_header_only(tmp: Path) -> Path:
    folder = tmp / "csv"
    folder.mkdir()
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785)) + "\n"
    for split in ("train", "test"):
        (folder / f"fashion-mnist_{split}.csv").write_text(header)
    return folder


def table(tmp: Path, csv: str, **changes) -> list[str]:
    """sweeps/table.yaml on a small CSV of ours, stores in tmp."""
    (tmp / "rows.csv").write_text(csv)
    return ["run", str(write_sweep(tmp, "table.yaml", data__data_dir=str(tmp / "rows.csv"),
                                   study__storage=f"sqlite:///{tmp}/optuna.db", study__n_trials=1,
                                   tracking__tracking_uri=f"sqlite:///{tmp}/mlflow.db", **changes))]


def one_trial_study(tmp: Path, data_dir: Path) -> list[str]:
    """A study with one COMPLETE trial (scripted, no training), asked to confirm its top 3."""
    import optuna

    path = tiny(tmp, data_dir)
    study = optuna.create_study(study_name="fashion-mnist-smoke", storage=f"sqlite:///{tmp}/optuna.db",
                                direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.8, user_attrs={"hyperparameters": {}, "mlflow_run_id": "x"}))
    return ["confirm", str(path), "--top-k", "3"]


def npz_sweep(tmp: Path, **arrays) -> list[str]:
    """sweeps/smoke.yaml on a small .npz of features of ours; `arrays` replace or add to its four arrays."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)), np.arange(40) % 4
    contents = {"x_train": x, "y_train": y, "x_test": x[:8], "y_test": y[:8], **arrays}
    np.savez(tmp / "data.npz", **{key: array for key, array in contents.items() if array is not None})
    return ["run", str(tiny(tmp, tmp / "data.npz", data__dataset="npz"))]


def with_value(value: float, *at: int) -> np.ndarray:
    """npz_sweep's features with `value` at the flat positions `at` (the first by default)."""
    x = np.random.default_rng(0).normal(size=(40, 6))
    x.flat[list(at or [0])] = value
    return x


def npz_file(tmp: Path, **arrays) -> Path:
    np.savez(tmp / "inputs.npz", **arrays)
    return tmp / "inputs.npz"


def npz_enormous_header(tmp: Path, data_dir: Path) -> list[str]:
    """A .npz whose x_train.npy header claims 10^12 x 10^6 float64 over a few bytes of data."""
    args = npz_sweep(tmp, x_train=None)
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 1000000), }"
    with zipfile.ZipFile(tmp / "data.npz", "a") as archive:
        archive.writestr("x_train.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + 1) + header + b"\n"
                         + bytes(64))
    return args


def garbage_file(tmp: Path, name: str) -> Path:
    (tmp / name).write_bytes(b"this is not what the name says\n" * 4)
    return tmp / name


def image_class_folders(tmp: Path) -> Path:
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp / "pictures" / name).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(np.full((8, 8), index, np.uint8)).save(tmp / "pictures" / name / f"{index}.png")
    return tmp / "pictures"


def features_model(tmp: Path, inputs: np.ndarray, suffix: str) -> list[str]:
    """`sweep predict` with a model of 6 float features (as an npz of features trains), on `inputs`."""
    from pipeline.data.records import InputSpec
    from pipeline.hyperparameters import Hyperparameters
    from pipeline.model import build_model
    from pipeline.preprocessing import fit_stats

    import keras

    train = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    params = Hyperparameters(units=4, preprocessing="standardize")
    keras.utils.set_random_seed(1)  # weights under which inputs of 3e38 overflow to NaN (others give 1/3 each)
    build_model(params, InputSpec((6,), "float32"), 3, fit_stats(train)).save(tmp / "features.keras")
    if suffix == ".npz":
        np.savez(tmp / "inputs.npz", x=inputs)
    else:
        (tmp / "inputs.csv").write_text("a,b,c,d,e,f\n" + "\n".join(",".join(map(str, row)) for row in inputs) + "\n")
    return ["predict", str(tmp / "features.keras"), str(tmp / f"inputs{suffix}")]


def journal_with_garbage_inside(tmp: Path, data_dir: Path) -> list[str]:
    """A journal whose second line is damaged: refused as a whole, never written after (only a last line cut
    off by a crash is repaired; see tests/test_faults.py)."""
    journal = tmp / "optuna.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="fashion-mnist-smoke", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    first, rest = journal.read_bytes().split(b"\n", 1)
    journal.write_bytes(first + b"\n" + b'{"op_code": 4, "study_id"\n' + rest)
    return ["run", str(tiny(tmp, data_dir, study__storage=f"journal:///{journal}"))]


def dangling_link(tmp: Path, name: str) -> Path:
    """A symlink to a path under /nonexistent (the table's test checks it is never created)."""
    os.symlink("/nonexistent/store", tmp / name)
    return tmp / name


def in_folder_with_dangling_mlruns(tmp: Path, data_dir: Path) -> list[str]:
    """The default stores (./mlruns/...) where mlruns is a symlink whose target is gone."""
    dangling_link(tmp, "mlruns")
    return ["run", str(write_sweep(tmp, data__data_dir=str(data_dir)))]


def export_over_victim(tmp: Path, data_dir: Path) -> list[str]:
    """`sweep export --force` onto a folder of the user's: it once deleted it (tests/test_export.py checks the
    file is still there)."""
    victim = tmp / "victim"
    victim.mkdir()
    (victim / "important.txt").write_text("x")
    return ["export", str(tiny(tmp, data_dir)), "--out", str(victim), "--force"]


def export_over_project(tmp: Path, data_dir: Path) -> list[str]:
    """`--out $PWD --force` in a project: it once deleted the sweep file, the journal and the artifacts."""
    (tmp / "mlruns").mkdir()
    (tmp / "mlruns" / "optuna.journal").write_text("")
    return ["export", str(tiny(tmp, data_dir)), "--out", str(tmp), "--force"]


def export_into_working_folder(tmp: Path, data_dir: Path) -> list[str]:
    path = tiny(tmp, data_dir)
    (tmp / "empty").mkdir()
    os.chdir(tmp / "empty")
    return ["export", str(path), "--out", "."]


def report_over(tmp: Path, data_dir: Path, name: str) -> list[str]:
    """`sweep report --out` onto an existing file of the project's: it once overwrote the study's own store."""
    (tmp / "mlruns").mkdir()
    for store in ("optuna.journal", "mlflow.db", "notes.md"):
        (tmp / "mlruns" / store).write_text("")
    (tmp / "notes.json").write_text("{}")
    os.symlink("loop", tmp / "loop")
    sweep = tiny(tmp, data_dir)
    return ["report", str(sweep), "--format", "csv", "--out", str(sweep if name == "sweep" else tmp / name)]


def export_onto_link(tmp: Path, data_dir: Path, target: str) -> list[str]:
    """`sweep export --out LINK --force`: it once failed only after the export, replacing the link with a folder."""
    (tmp / "earlier").mkdir()
    os.symlink(target, tmp / "link")
    return ["export", str(tiny(tmp, data_dir)), "--out", str(tmp / "link"), "--force"]


def junk_tracking_store(tmp: Path, data_dir: Path, command: str) -> list[str]:
    """A tracking store's mlflow.db that is some other file: it once gave SQLAlchemy's traceback."""
    (tmp / "mlflow.db").write_text("junk\n")
    sweep = tiny(tmp, data_dir)
    if command == "report":
        optuna.create_study(study_name="fashion-mnist-smoke", storage=f"sqlite:///{tmp}/optuna.db",
                            direction="maximize").add_trial(optuna.trial.create_trial(value=0.5))
    return [command, str(sweep)]


def in_folder_with_looping_mlruns(tmp: Path, data_dir: Path, command: str) -> list[str]:
    """`ln -s mlruns mlruns` where the default stores go: it once gave a "Symlink loop" traceback."""
    os.symlink("mlruns", tmp / "mlruns")
    return [command, str(write_sweep(tmp, data__data_dir=str(data_dir)))]


def examples_over_copies(tmp: Path, data_dir: Path) -> list[str]:
    (tmp / "sweeps").mkdir()
    (tmp / "sweeps" / "smoke.yaml").write_text("# my edits\n")
    return ["examples", "--out", str(tmp / "sweeps")]


def table_and_test_file(tmp: Path, csv: str, test_csv: str) -> list[str]:
    """sweeps/table.yaml on rows.csv, with test.csv beside it as data.test_file."""
    (tmp / "test.csv").write_text(test_csv)
    return table(tmp, csv, data__test_file="test.csv")


def table_model(tmp: Path, rows: str) -> list[str]:
    """`sweep predict` on CSV rows with a table's model (a number `a`, a category `kind`; its study refused gaps)."""
    from pipeline.data.records import InputSpec
    from pipeline.hyperparameters import Hyperparameters
    from pipeline.model import build_model
    from pipeline.preprocessing import fit_stats

    x = np.array([(0.5, "p"), (1.5, "q")], dtype=[("a", "f4"), ("kind", "U1")])
    build_model(Hyperparameters(units=4), InputSpec.of(x), 2, fit_stats(x)).save(tmp / "table.keras")
    (tmp / "served.csv").write_text(rows)
    return ["predict", str(tmp / "table.keras"), str(tmp / "served.csv")]


def flat_npz(tmp: Path, data_dir: Path) -> list[str]:
    """A cnn sweep on an npz of feature vectors (no height and width to convolve over)."""
    rng = np.random.default_rng(0)
    np.savez(tmp / "features.npz", x_train=rng.random((200, 64), np.float32), y_train=np.arange(200) % 2,
             x_test=rng.random((40, 64), np.float32), y_test=np.arange(40) % 2)
    return ["run", str(tiny(tmp, tmp / "features.npz", data__dataset="npz", data__subset=None,
                            data__test_subset=None, model__family="cnn"))]


def regression_sweep(tmp: Path, csv: str | None = None, **arrays) -> list[str]:
    """sweeps/regression.yaml on a small CSV of ours (label `progression`), or on an .npz of `arrays` replacing
    or adding to its four, stores in tmp."""
    settings = {"study__storage": f"sqlite:///{tmp}/optuna.db", "study__n_trials": 1,
                "tracking__tracking_uri": f"sqlite:///{tmp}/mlflow.db"}
    if csv is not None:
        (tmp / "rows.csv").write_text(csv)
        return ["run", str(write_sweep(tmp, "regression.yaml", data__data_dir=str(tmp / "rows.csv"), **settings))]
    x, y = np.random.default_rng(0).normal(size=(40, 6)), np.linspace(0.0, 10.0, 40)
    np.savez(tmp / "data.npz", **{"x_train": x, "y_train": y, "x_test": x[:8], "y_test": y[:8], **arrays})
    return ["run", str(write_sweep(tmp, "regression.yaml", data__dataset="npz", data__data_dir=str(tmp / "data.npz"),
                                   data__label=None, data__categorical=None, data__missing=None, **settings))]


def regression_builder_sweep(tmp: Path, source: str) -> list[str]:
    """sweeps/regression.yaml (the shipped diabetes table) with model.builder naming models/net.py:build."""
    (tmp / "models").mkdir(exist_ok=True)
    (tmp / "models" / "net.py").write_text(f"import keras\n\n\n{source}")
    return ["run", str(write_sweep(tmp, "regression.yaml", data__data_dir=str(SWEEPS / "data" / "diabetes.csv"),
                                   model__builder="models/net.py:build", study__n_trials=1,
                                   study__storage=f"sqlite:///{tmp}/optuna.db",
                                   tracking__tracking_uri=f"sqlite:///{tmp}/mlflow.db"))]


def builder_sweep(tmp: Path, data_dir: Path, source: str | None, builder: str = "models/net.py:build") -> list[str]:
    """sweeps/smoke.yaml with model.builder naming a function in models/net.py beside it, the file holding
    `source` after `import keras` (None: no file)."""
    if source is not None:
        (tmp / "models").mkdir(exist_ok=True)
        (tmp / "models" / "net.py").write_text(f"import keras\n\n\n{source}")
    return ["run", str(tiny(tmp, data_dir, model__builder=builder))]


def builder_of(*lines: str) -> str:
    """A builder's `build` with these lines as its body, `x` the flattened input."""
    return "\n".join(["def build(params, inputs, n_outputs):", "    x = keras.layers.Flatten()(inputs)",
                      *(f"    {line}" for line in lines)]) + "\n"


def studies_of_two_tasks(tmp: Path, metric: str | None = None) -> list[str]:
    """A classification study and a regression one in one storage (scripted, no training), compared; both
    optimizing `metric` when it is given."""
    from pipeline.config import parse_sweep

    storage = f"sqlite:///{tmp}/optuna.db"
    for name, source in (("classes", "smoke.yaml"), ("numbers", "regression.yaml")):
        raw = yaml.safe_load((SWEEPS / source).read_text())
        raw["study"].update(name=name, **({"metric": metric} if metric else {}))
        study = optuna.create_study(study_name=name, storage=storage,
                                    direction=parse_sweep(raw, SWEEPS / source).study.direction)
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"hyperparameters": {}, "mlflow_run_id": "x"}))
        study.set_user_attr("sweep_file", yaml.safe_dump(raw))
    return ["compare", "classes", "numbers", "--storage", storage, "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"]


CUSTOM_LAYER = """class Twice(keras.layers.Layer):
    def call(self, x):
        return 2 * x


""" + builder_of("x = Twice(name='twice')(x)", "return keras.layers.Dense(n_outputs, activation='softmax')(x)")

CASES = {
    # Sweep files: validated into typed objects before anything starts.
    "unknown key": Case(lambda t, d: ["run", str(tiny(t, d, study__trials=3))], 2, "study.trials: unknown key"),
    "NaN learning rate": Case(lambda t, d: ["run", str(tiny(t, d, search_space__learning_rate=float("nan")))], 2,
                              "search_space.learning_rate: nan is out of range"),
    "infinite timeout": Case(lambda t, d: ["run", str(tiny(t, d, study__timeout=float("inf")))], 2,
                             "study.timeout: inf is out of range"),
    "YAML alias bomb": Case(lambda t, d: raw_yaml(t, "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(7))
        + "study: {name: *h}\n"), 2, "expands to more than 10000 values"),
    "sweep file over 1 MB": Case(lambda t, d: raw_yaml(t, "#" * 1_100_000), 2, "a sweep file is at most 1000000"),
    "missing sweep file": Case(lambda t, d: ["run", str(t / "nope.yaml")], 2, "nope.yaml: no such sweep file"),
    "invalid registered model name": Case(
        lambda t, d: ["run", str(tiny(t, d, tracking__registered_model="../x/y"))], 2,
        "tracking.registered_model: '../x/y' cannot name a registered model"),
    "zero trials on the command line": Case(lambda t, d: ["run", str(tiny(t, d)), "--n-trials", "0"], 2,
                                            "--n-trials: must be at least 1"),
    "zero workers": Case(lambda t, d: ["run", str(tiny(t, d)), "--workers", "0"], 2, "--workers: must be at least 1"),
    # Stores: a mistyped path or URL is refused, not created.
    "storage in a folder that does not exist": Case(
        lambda t, d: ["run", str(tiny(t, d)), "--storage", f"sqlite:///{t}/nowhere/deeper/x.db"], 2,
        "nowhere/deeper does not exist; create it first"),
    "tracking store in a folder that does not exist": Case(
        lambda t, d: ["run", str(tiny(t, d)), "--tracking-uri", f"sqlite:///{t}/nowhere/m.db"], 2,
        "nowhere does not exist; create it first"),
    "unknown storage scheme": Case(lambda t, d: ["run", str(tiny(t, d)), "--storage", "foo://bar/baz"], 2,
                                   "foo://bar/baz: not a study storage this tool can open"),
    "damaged study database": Case(damaged_study_database, 1, "cannot open the study storage"),
    "PostgreSQL database that does not exist": Case(missing_postgres_database, 1, "cannot open the study storage"),
    "mlruns is a file": Case(in_folder_with_mlruns_file, 2, "is a file, not a folder"),
    "unreachable tracking server": Case(lambda t, d: ["run", str(tiny(t, d)), "--tracking-uri",
                                                      "http://127.0.0.1:9"], 1, "is unreachable"),
    "changed search space": Case(changed_space, 2, "units (was int 16..128, log, now int 16..128)",
                                 leaves=("optuna.db",)),
    # Data: checked in the worker before the stores are opened.
    "missing data folder": Case(lambda t, d: ["run", str(tiny(t, t / "absent"))], 2, "data folder not found"),
    "damaged IDX file": Case(damaged_idx, 2, "cannot read IDX file"),
    "empty test set": Case(lambda t, d: ["run", str(tiny(t, small_idx(t, test_per_class=0),
                                                          data__test_subset=None))], 2, "the test set is empty"),
    "a class with one image": Case(lambda t, d: ["run", str(tiny(t, small_idx(
        t, y_train=np.r_[np.repeat(np.arange(9), 33), [9, 0, 0]]), data__subset=None))], 2,
        "class 9 ('Ankle boot') has 1 training image"),
    "Kaggle CSV with only a header": Case(lambda t, d: ["run", str(tiny(t, kaggle_header_only(t)))], 2,
                                          "has no rows"),
    "table without its label column": Case(lambda t, d: table(t, "a,b\n1,2\n3,4\n"), 2,
                                           "rows.csv: no column 'cultivar'; the table's columns are 'a', 'b'"),
    "empty table": Case(lambda t, d: table(t, "a,cultivar\n"), 2, "rows.csv: the table holds no rows"),
    "text in a numeric column": Case(lambda t, d: table(t, "a,b,cultivar\n1,x,p\n2,y,q\n"), 2,
                                     "column 'b' is not numeric (e.g. 'x'); list it in data.categorical"),
    "missing values in a table": Case(lambda t, d: table(t, "a,b,cultivar\n1,,p\n,,q\n3,4,\n"), 2,
                                      "missing values in 'a' (1 rows), 'b' (2 rows), 'cultivar' (1 rows); set "
                                      "data.missing to drop"),
    "table keys on an image source": Case(lambda t, d: ["run", str(tiny(t, d, data__label="y"))], 2,
                                          "data.label: applies to data.dataset 'table' only"),
    "confirm more configurations than completed": Case(one_trial_study, 2,
                                                       "has 1 COMPLETE trial(s); cannot confirm the top 3"),
    "confirm with too few seeds": Case(lambda t, d: ["confirm", str(tiny(t, d)), "--seeds", "0"], 2,
                                       "--seeds: must be at least 2 (the search trial is the first seed), got 0"),
    "confirm a study that never ran": Case(lambda t, d: ["confirm", str(tiny(t, d))], 2,
                                           "no study storage at sqlite:///"),
    "confirm settings in the sweep file": Case(lambda t, d: ["run", str(tiny(t, d, study__confirm={"top_k": 0}))],
                                               2, "study.confirm.top_k: must be at least 1"),
    "a zero export limit": Case(lambda t, d: ["export", str(tiny(t, d)), "--out", str(t / "e"), "--max-latency-ms",
                                              "0"], 2, "--max-latency-ms: must be above 0, got 0.0"),
    "a negative constraint": Case(lambda t, d: ["run", str(tiny(t, d, study__constraints={"max_model_mb": -1}))], 2,
                                  "study.constraints.max_model_mb: must be above 0, got -1"),
    "an unknown objective": Case(lambda t, d: ["run", str(tiny(t, d, study__objectives=["val_accuracy", "speed"]))],
                                 2, "study.objectives[1]: 'speed' is not allowed; allowed: latency_ms, params_count"),
    "several objectives and a pruner": Case(lambda t, d: ["run", str(tiny(
        t, d, study__objectives=["val_accuracy", "latency_ms"], study__pruner="median"))], 2,
        "study.pruner: Optuna cannot prune a multi-objective study"),
    "a limit on an objective": Case(lambda t, d: ["run", str(tiny(
        t, d, study__objectives=["val_accuracy", "latency_ms"], study__constraints={"max_latency_ms": 1}))], 2,
        "study.constraints.max_latency_ms: caps latency_ms, which study.objectives already minimizes"),
    # Other commands.
    "report into a missing folder": Case(lambda t, d: report_to(t, t / "no" / "report.md"), 2,
                                         "report.md: cannot write the report (No such file or directory)"),
    "report onto a folder": Case(lambda t, d: report_to(t, t), 2, "cannot write the report (Is a directory)"),
    "report on a study that never ran": Case(lambda t, d: ["report", "--study", "never", "--storage",
                                                           f"journal:///{t}/none.journal"], 1, "no study storage at"),
    "export name with a slash": Case(lambda t, d: ["export", str(tiny(t, d)), "--out", str(t / "e"), "--name", "a/b"],
                                     2, "--name: 'a/b' cannot name a registered model"),
    "predict a decompression bomb": Case(lambda t, d: ["predict", str(d), str(huge_png(t / "huge.png"))], 2,
                                         "too large to decode safely"),
    "predict an image that is not one": Case(junk_png, 2, "cannot decode the image"),
    "predict with a model that is not there": Case(lambda t, d: ["predict", str(t / "absent"), str(t)], 2,
                                                   "no model here"),
    "predict a folder of inputs": Case(lambda t, d: ["predict", str(d), str(t)], 2, "is a folder; give the files in it"),
    # Issue 21, tables: served as they were read, refused by column.
    "infinite numbers in a table": Case(lambda t, d: table(t, "a,b,cultivar\n1,inf,p\n2,3,q\n3,-inf,p\n4,5,q\n"), 2,
                                        "rows.csv: infinite numbers, or numbers beyond float32 (about 3.4e38), in "
                                        "'b' (2 rows)"),
    "a table number beyond float32": Case(lambda t, d: table(t, "a,b,cultivar\n1e39,2,p\n2,3,q\n"), 2,
                                          "numbers beyond float32 (about 3.4e38), in 'a' (1 rows)"),
    "a duplicate column in a table": Case(lambda t, d: table(t, "a,b,a,cultivar\n1,2,3,p\n4,5,6,q\n"), 2,
                                          "rows.csv: the column 'a' appears 2 times in the header"),
    "a test file that is the training table": Case(lambda t, d: table(t, "a,cultivar\n1,p\n2,q\n",
                                                                      data__test_file="rows.csv"), 2,
                                                   "data.test_file is the training table"),
    "a test file that is a copy of the training table": Case(lambda t, d: table_and_test_file(
        t, "a,cultivar\n1,p\n2,q\n", "a,cultivar\n1,p\n2,q\n"), 2,
        "rows.csv byte for byte (a copy); the test rows must be rows training never saw"),
    "text in a numeric column of the test file": Case(lambda t, d: table_and_test_file(
        t, "a,b,cultivar\n1,2,p\n3,4,q\n", "a,b,cultivar\n1,x,p\n"), 2,
        "test.csv: column 'b' is not numeric (e.g. 'x'); list it in data.categorical"),
    "a test file lacking a feature column": Case(lambda t, d: table_and_test_file(
        t, "a,b,cultivar\n1,2,p\n3,4,q\n", "a,cultivar\n1,p\n"), 2,
        "test.csv: the test table lacks the feature column(s) 'b'"),
    "a class only in the test file": Case(lambda t, d: table_and_test_file(
        t, "a,cultivar\n1,p\n2,p\n3,p\n4,q\n5,q\n6,q\n", "a,cultivar\n1,p\n2,r\n"), 2,
        "class 2 ('r') appears only in the test rows: training never saw it"),
    "a continuous label": Case(lambda t, d: table(t, "a,cultivar\n" + "".join(f"{i},{i * 0.37:.2f}\n" for i in range(200))),
                               2, "the label column 'cultivar': 200 distinct numeric values in 200 rows (e.g. 0, "
                               "0.37, 0.74) look like a measurement, not classes; to predict the number set `task: "
                               "regression`"),
    "a text label with a class per row": Case(lambda t, d: table(t, "a,cultivar\n" + "".join(
        f"{i},class {i}\n" for i in range(200))), 2, "cannot split 200 inputs stratified by class"),
    "predict table rows beyond float32": Case(lambda t, d: table_model(t, "a,kind\n1,p\n1e39,q\n"), 2,
                                              "served.csv: column 'a' has 1 value(s) that are infinite or beyond "
                                              "float32's range (e.g. 1e+39)"),
    "predict table rows with gaps its study refused": Case(lambda t, d: table_model(t, "a,kind\n1,p\n,q\n2,\n"), 2,
                                                           "column 'a' has 1 missing value(s); this model takes "
                                                           "complete rows (its study refused or dropped rows with "
                                                           "gaps); column 'kind' has 1 missing"),
    "predict table rows with text for a number": Case(lambda t, d: table_model(t, "a,kind\nlots,p\n"), 2,
                                                      "column 'a' has 1 value(s) that are not numbers (e.g. 'lots')"),
    "predict table rows with a duplicate column": Case(lambda t, d: table_model(t, "a,kind,a\n1,p,2\n"), 2,
                                                       "served.csv: the column 'a' appears 2 times in the header"),
    "predict table rows without a column": Case(lambda t, d: table_model(t, "a\n1\n"), 2,
                                                "served.csv: the rows lack the column(s) 'kind' the model takes"),
    "predict an empty table": Case(lambda t, d: table_model(t, "a,kind\n"), 2, "served.csv: the table holds no rows"),
    # Issue 21, images and arrays: decoded faithfully, within memory.
    "npz features with NaN and inf": Case(lambda t, d: npz_sweep(t, x_train=with_value(np.inf, 7) + with_value(
        np.nan, 3)), 2, "x_train holds 2 value(s) that are NaN, infinite or beyond float32's range"),
    "npz features beyond float32": Case(lambda t, d: npz_sweep(t, x_test=with_value(1e39)[:8]), 2,
                                        "x_test holds 1 value(s) that are NaN, infinite or beyond float32's range"),
    "npz class_names longer than the classes": Case(lambda t, d: npz_sweep(t, class_names=np.array(list("abcde"))),
                                                    2, "class_names has 5 names but the labels use 4 classes"),
    "npz class_names with a duplicate": Case(lambda t, d: npz_sweep(t, class_names=np.array(["a", "b", "a", "c"])), 2,
                                             "class_names names 'a' more than once"),
    "npz with an enormous header": Case(npz_enormous_header, 2, "x_train's header claims shape (1000000000000, "
                                        "1000000) of float64 (7.45e+09 GiB) but the file holds 64 bytes for it"),
    "npz that is not a zip": Case(lambda t, d: ["run", str(tiny(t, garbage_file(t, "data.npz"), data__dataset="npz"))],
                                  2, "data.npz: not a valid .npz file (a zip archive of .npy arrays"),
    "npz of Python objects": Case(lambda t, d: npz_sweep(t, x_train=np.array([{"a": 1}] * 40, dtype=object)), 2,
                                  "x_train holds Python objects (pickled)"),
    "npz without y_test": Case(lambda t, d: npz_sweep(t, y_test=None), 2, "missing y_test"),
    "npz with one-hot labels": Case(lambda t, d: npz_sweep(t, y_train=np.eye(4)[np.arange(40) % 4]), 2,
                                    "y_train has shape (40, 4); expected one integer class per input, shape (40,) "
                                    "(one-hot labels: save y_train.argmax(axis=1))"),
    "npz labels beyond the class names": Case(lambda t, d: npz_sweep(t, class_names=np.array(["a", "b"])), 2,
                                              "train labels must be integers 0..1 (one per class name)"),
    "image folder too large for memory": Case(lambda t, d: ["run", str(tiny(
        t, image_class_folders(t), data__dataset="images", data__image_size=[400000, 400000]))], 2,
        "a smaller data.image_size (up to ["),
    "predict with a .keras file that is not one": Case(lambda t, d: ["predict", str(garbage_file(t, "m.keras")), str(t)],
                                                       2, "m.keras: cannot be read as a Keras model file"),
    "predict an npz that is not one": Case(lambda t, d: ["predict", str(d), str(garbage_file(t, "x.npz"))], 2,
                                           "x.npz: not a valid .npz file"),
    "predict pixels that are not 0..255": Case(lambda t, d: ["predict", str(d), str(npz_file(
        t, x=np.full((1, 28, 28), 300.0)))], 2, "holds 784 value(s) that are not whole numbers 0..255 (e.g. 300.0)"),
    "predict features with inf": Case(lambda t, d: features_model(t, with_value(np.inf)[:2], ".npz"), 2,
                                      "inputs.npz: holds 1 value(s) that are NaN, infinite or beyond float32's range"),
    "predict features beyond float32 from CSV": Case(lambda t, d: features_model(t, with_value(1e39)[:2], ".csv"), 2,
                                                     "inputs.csv: holds 1 value(s) that are NaN, infinite or beyond"),
    "predict features with a gap in the CSV": Case(lambda t, d: features_model(t, with_value(np.nan)[:2], ".csv"), 2,
                                                   "inputs.csv: holds 1 value(s) that are NaN"),
    "predict features far outside training": Case(lambda t, d: features_model(t, with_value(3e38, *range(6))[:2], ".npz"), 2,
                                                  "the model's probabilities for 1 input(s) are NaN"),
    # Issue 21, stores and crashes: never written after damage, never shown with a password.
    "a journal with a damaged line inside": Case(journal_with_garbage_inside, 1, "cannot open the study storage"),
    "a password in an unreachable PostgreSQL URL": Case(
        lambda t, d: ["run", str(tiny(t, d)), "--storage", "postgresql://user:SECRET@127.0.0.1:9/x"], 1,
        "cannot open the study storage postgresql://127.0.0.1:9/x: "),  # the user and password are left out
    "report with a password in an unreachable PostgreSQL URL": Case(
        lambda t, d: ["report", "--study", "s", "--storage", "postgresql://user:SECRET@127.0.0.1:9/x?password=SECRET"],
        1, "sweep: error: cannot open the study storage postgresql://127.0.0.1:9/x: "),
    "a password in an unknown storage scheme": Case(
        lambda t, d: ["run", str(tiny(t, d)), "--storage", "foo://user:SECRET@host/db?password=SECRET"], 2,
        "sweep: error: foo://host/db: not a study storage"),
    "a password in an unreachable tracking server URL": Case(
        lambda t, d: ["run", str(tiny(t, d)), "--tracking-uri", "http://user:SECRET@127.0.0.1:9"], 1,
        "sweep: error: the MLflow tracking server http://127.0.0.1:9 is unreachable"),
    "predict a registered model where there is no tracking store": Case(
        lambda t, d: ["predict", "models:/smoke-classifier@champion", str(t / "image.png")], 2,
        "no tracking store at sqlite:///"),
    "predict a run's model from a tracking store that is not there": Case(
        lambda t, d: ["predict", "runs:/0123/model", str(t / "image.png"), "--tracking-uri",
                      f"sqlite:///{t}/absent.db"], 2, "absent.db; run `sweep run` first"),
    "a dangling mlruns symlink": Case(in_folder_with_dangling_mlruns, 2,
                                      "mlruns is a symlink to /nonexistent/store, which does not exist"),
    "a dangling symlink as the tracking database": Case(
        lambda t, d: ["run", str(tiny(t, d)), "--tracking-uri", f"sqlite:///{dangling_link(t, 'm.db')}"], 2,
        "m.db is a symlink to /nonexistent/store, which does not exist"),
    "report with a dangling symlink as the study storage": Case(
        lambda t, d: ["report", "--study", "s", "--storage", f"journal:///{dangling_link(t, 'optuna.journal')}"], 2,
        "optuna.journal is a symlink to /nonexistent/store"),
    # Issue 21, export, report and the command line.
    "report on a tracking store that is not SQLite": Case(lambda t, d: junk_tracking_store(t, d, "report"), 1,
                                                          "mlflow.db: is not an SQLite database, so not an MLflow "
                                                          "tracking store"),
    "run on a tracking store that is not SQLite": Case(lambda t, d: junk_tracking_store(t, d, "run"), 1,
                                                       "mlflow.db: is not an SQLite database", leaves=("optuna.db",)),
    "run with mlruns a symlink to itself": Case(lambda t, d: in_folder_with_looping_mlruns(t, d, "run"), 2,
                                                "mlruns is a symlink to mlruns, which does not exist or loops back "
                                                "on itself"),
    "report with mlruns a symlink to itself": Case(lambda t, d: in_folder_with_looping_mlruns(t, d, "report"), 2,
                                                   "mlruns is a symlink to mlruns, which does not exist or loops"),
    "export with mlruns a symlink to itself": Case(lambda t, d: in_folder_with_looping_mlruns(t, d, "export") + [
        "--out", str(t / "e")], 2, "mlruns is a symlink to mlruns, which does not exist or loops"),
    "examples copied into a symlink loop": Case(lambda t, d: in_folder_with_looping_mlruns(t, d, "examples")[:1] + [
        "--out", "mlruns"], 2, "mlruns: is a symlink to mlruns, which does not exist or loops back on itself"),
    "export --force onto a symlink to an earlier export": Case(lambda t, d: export_onto_link(t, d, "earlier"), 2,
                                                               "link: is a symlink to earlier; an export replaces "
                                                               "--out whole, so give the real folder, --out /"),
    "export onto a dangling symlink": Case(lambda t, d: export_onto_link(t, d, "/nonexistent/export"), 2,
                                           "link: is a symlink to /nonexistent/export, which does not exist"),
    "export onto a symlink loop": Case(lambda t, d: export_onto_link(t, d, "link"), 2,
                                       "link: is a symlink to link, which does not exist or loops back on itself; "
                                       "give a real folder as --out"),
    "export into a folder under a symlink loop": Case(lambda t, d: export_onto_link(t, d, "link")[:3] + [
        str(t / "link" / "x")], 2, "link: is a symlink to link, which does not exist or loops back on itself"),
    "export into a file as if it were a folder": Case(lambda t, d: ["export", str(tiny(t, d)), "--out",
                                                                    str(t / "tiny.yaml" / "x")], 2,
                                                      "tiny.yaml: is a file, not a folder"),
    "report --out onto the study's journal": Case(lambda t, d: report_over(t, d, "mlruns/optuna.journal"), 2,
                                                  "optuna.journal: exists and is a store or inside one"),
    "report --out onto the tracking database": Case(lambda t, d: report_over(t, d, "mlruns/mlflow.db"), 2,
                                                    "mlflow.db: exists and is a store or inside one"),
    "report --out onto a report-like file in mlruns": Case(lambda t, d: report_over(t, d, "mlruns/notes.md"), 2,
                                                           "notes.md: exists and is a store or inside one"),
    "report --out onto its own sweep file": Case(lambda t, d: report_over(t, d, "sweep"), 2,
                                                 "tiny.yaml: exists and is a sweep file"),
    "report --out onto a symlink loop": Case(lambda t, d: report_over(t, d, "loop"), 2,
                                             "loop: is a symlink to loop, which does not exist or loops back on"),
    "report --out onto a file that is not a report": Case(lambda t, d: report_over(t, d, "notes.json"), 2,
                                                          "notes.json: exists and is a file that is not a report"),
    "export --force over a folder it did not write": Case(export_over_victim, 2,
                                                          "victim: holds other files (important.txt), so it is not "
                                                          "an earlier export to replace"),
    "export --force over the project folder": Case(export_over_project, 2,
                                                   "holds a store (mlruns), a sweep file (tiny.yaml), so it is not"),
    "export --out . in an empty working folder": Case(export_into_working_folder, 2,
                                                      "empty: is the working folder or holds it"),
    "export onto a file": Case(lambda t, d: ["export", str(tiny(t, d)), "--out", str(t / "tiny.yaml")], 2,
                               "tiny.yaml: exists and is not a folder"),
    "an infinite export limit": Case(lambda t, d: ["export", str(tiny(t, d)), "--out", str(t / "e"),
                                                   "--max-latency-ms", "inf"], 2,
                                     "--max-latency-ms: must be a finite number, got inf"),
    "a NaN export limit": Case(lambda t, d: ["export", str(tiny(t, d)), "--out", str(t / "e"), "--max-model-mb",
                                             "nan"], 2, "--max-model-mb: must be a finite number, got nan"),
    "a duplicate key in a sweep file": Case(lambda t, d: raw_yaml(t, "study:\n  name: a\n  n_trials: 3\n"
                                                                     "  n_trials: 5\n"), 2,
                                            "bad.yaml: line 4: 'n_trials' appears twice in one mapping (first on "
                                            "line 3)"),
    "a duplicate key in a flow mapping": Case(lambda t, d: raw_yaml(t, "study: {name: a, name: b}\n"), 2,
                                              "bad.yaml: line 1: 'name' appears twice"),
    "a sweep name that is not a shipped example": Case(lambda t, d: ["run", "smok"], 2,
                                                       "smok: no such sweep file, and no shipped example of that "
                                                       "name; the examples are builder, fashion_mnist,"),
    "examples copied over earlier copies": Case(examples_over_copies, 2, "smoke.yaml: already exists (1 of the"),
    # Issue 22, cnn: convolutions need images, and the cnn's own hyperparameters need a cnn.
    "a cnn on a table": Case(lambda t, d: table(t, "a,b,cultivar\n1,2,p\n3,4,q\n", model__family="cnn"), 2,
                             "model.family: 'cnn' convolves over images; data.dataset 'table' has rows"),
    "a cnn on an npz of flat features": Case(flat_npz, 2, "model.family: 'cnn' convolves over images (height x "
                                             "width [x channels]); this data is vectors of 64 features"),
    "a cnn hyperparameter in a dense sweep": Case(lambda t, d: ["run", str(tiny(t, d, search_space__filters=32))], 2,
                                                  "search_space.filters: applies to model.family cnn only"),
    "a kernel size drawn from a range": Case(lambda t, d: ["run", str(tiny(
        t, d, model__family="cnn", search_space__kernel_size={"type": "int", "low": 3, "high": 5}))], 2,
        "search_space.kernel_size.type: 'int' would draw every value between its bounds, but only 3, 5 are allowed"),
    # Issue 22, regression: numbers from tables and npz only, every label a finite number, a loss for numbers only.
    "a text label with task regression": Case(lambda t, d: regression_sweep(t, "a,progression\n1,10\n2,high\n3,30\n"),
                                              2, "the label column 'progression' is text, not numbers in 1 row(s) "
                                              "(1, e.g. 'high'); task regression needs a finite number in every row"),
    "an infinite label with task regression": Case(lambda t, d: regression_sweep(
        t, "a,progression\n1,10\n2,inf\n3,30\n"), 2, "the label column 'progression' is infinite in 1 row(s) (1,"),
    "a missing label with task regression": Case(lambda t, d: regression_sweep(t, "a,progression\n1,10\n2,\n3,30\n"),
                                                 2, "missing values in 'progression' (1 rows)"),
    "a NaN label in a regression npz": Case(lambda t, d: regression_sweep(
        t, y_train=np.where(np.arange(40) == 3, np.nan, 1.0)), 2,
        "1 train label(s) are NaN, infinite or beyond float32's range (rows 3, e.g. nan); task regression needs a "
        "finite number per input"),
    "a constant label with task regression": Case(lambda t, d: regression_sweep(t, y_train=np.full(40, 7.0)), 2,
                                                  "task regression needs training labels that vary; found only 7"),
    "regression on an image source": Case(lambda t, d: raw_yaml(t, "task: regression\nstudy: {name: a}\n"), 2,
                                          "task: 'regression' predicts numbers from data.dataset npz or table; "
                                          "'fashion_mnist' has classes"),
    "a class label of whole numbers, mostly one row each": Case(lambda t, d: table(
        t, "a,cultivar\n" + "".join(f"{i},{i * 3}\n" for i in range(200))), 2,
        "200 distinct numeric values in 200 rows (e.g. 0, 3, 6) look like a measurement, not classes; to predict "
        "the number set `task: regression`"),
    "fractional class labels in an npz": Case(lambda t, d: npz_sweep(t, y_train=np.linspace(0.0, 3.9, 40)), 2,
                                              "look like a measurement, not classes; to predict the number set "
                                              "`task: regression`"),
    "a loss in a classification sweep": Case(lambda t, d: ["run", str(tiny(t, d, search_space__loss="mse"))], 2,
                                             "search_space.loss: applies to task regression only"),
    "a class label of whole-number scores, some on one row": Case(lambda t, d: table(
        t, "a,cultivar\n" + "".join(f"{i},{25 + 7 * (i // 2)}\n" for i in range(60)) + "60,400\n"), 2,
        "31 distinct numeric values in 61 rows (e.g. 25, 32, 39) look like a measurement, not classes; to predict "
        "the number set `task: regression`"),
    "label smoothing in a regression sweep": Case(lambda t, d: ["run", str(write_sweep(
        t, "regression.yaml", search_space__label_smoothing=0.1))], 2,
        "search_space.label_smoothing: applies to task classification only; it softens class targets"),
    # Issue 22, builder: a user's network is loaded and built on the first values of its space in the worker, before
    # anything is written; each refusal names the file, the function and the cause.
    "a builder file that is not there": Case(lambda t, d: builder_sweep(t, d, None), 2,
                                             "model.builder models/net.py:build: no such file"),
    "a builder without its function": Case(lambda t, d: builder_sweep(t, d, "def other(p, i, n):\n    0\n"), 2,
                                           "model.builder models/net.py:build: 'build' is not defined in the file; "
                                           "the file's functions: other"),
    "a builder that raises on the first values": Case(lambda t, d: builder_sweep(t, d, builder_of(
        "raise ValueError(f'too narrow: {params[\"units\"]}')")), 2,
        "models/net.py:build: raised ValueError: too narrow: 16 on the first values of the search space (units=16, "
        "dropout=0.0, activation='relu'"),
    "a builder with the wrong number of outputs": Case(lambda t, d: builder_sweep(t, d, builder_of(
        "return keras.layers.Dense(3, activation='softmax')(x)")), 2,
        "models/net.py:build: returned a tensor of shape (None, 3); expected the output tensor of shape (None, 10)"),
    "a regression builder ending in a softmax": Case(lambda t, d: regression_builder_sweep(t, builder_of(
        "return keras.layers.Dense(n_outputs, activation='softmax')(x)")), 2,
        "ends in a softmax, which over one value is 1 for every input; a regression's builder returns its value "
        "linear"),
    "a builder without a softmax": Case(lambda t, d: builder_sweep(t, d, builder_of(
        "return keras.layers.Dense(n_outputs)(x)")), 2,
        "models/net.py:build: its outputs are not class probabilities"),
    "a builder with a Lambda layer": Case(lambda t, d: builder_sweep(t, d, builder_of(
        "x = keras.layers.Lambda(lambda t: 2 * t, name='double')(x)",
        "return keras.layers.Dense(n_outputs, activation='softmax')(x)")), 2,
        "models/net.py:build: layer 'double' is a Lambda layer, whose code a saved model cannot carry safely"),
    "a builder with a custom layer class": Case(lambda t, d: builder_sweep(t, d, CUSTOM_LAYER), 2,
                                                "models/net.py:build: layer 'twice' is of a custom layer class"),
    "a builder's own entry that is no name": Case(lambda t, d: ["run", str(tiny(
        t, d, model__builder="models/net.py:build", **{"search_space__2x": 3}))], 2,
        "search_space.2x: a builder's own entry is named like a Python variable"),
    "a builder's own range upside down": Case(lambda t, d: ["run", str(tiny(
        t, d, model__builder="models/net.py:build", search_space__width={"type": "int", "low": 9, "high": 3}))], 2,
        "search_space.width: low (9) must not be greater than high (3)"),
    # Issue 22, regression downstream: a regression's scores are not compared with a classification's.
    "compare a classification study with a regression one": Case(
        lambda t, d: studies_of_two_tasks(t), 2, "study 'classes' optimizes val_accuracy but study 'numbers' optimizes "
        "val_rmse: their scores cannot be compared; compare studies of one task and one study.metric"),
    "compare a classification and a regression study both minimizing val_loss": Case(
        lambda t, d: studies_of_two_tasks(t, "val_loss"), 2,
        "study 'classes' tests on test_accuracy but study 'numbers' tests on test_rmse: their scores cannot be "
        "compared"),
    # Issue 23, storages: a storage proxy's URL is grpc://HOST:PORT, and the proxy fronts a database server only.
    "a storage proxy URL without its port": Case(lambda t, d: ["run", str(tiny(t, d)), "--storage", "grpc://127.0.0.1"],
                                                 2, "grpc://127.0.0.1: a storage proxy's URL is grpc://HOST:PORT"),
    "a storage proxy port that is not a number": Case(
        lambda t, d: ["run", str(tiny(t, d)), "--storage", "grpc://proxy-host:port"], 2,
        "grpc://proxy-host:port: a storage proxy's URL is grpc://HOST:PORT"),
    "a storage proxy that is not running": Case(
        lambda t, d: ["run", str(tiny(t, d)), "--storage", "grpc://127.0.0.1:9"], 1,
        "no storage proxy answers at grpc://127.0.0.1:9 (waited 5 s); start it on that machine with `sweep "
        "storage-proxy --storage postgresql://"),
    "report through a storage proxy that is not running": Case(
        lambda t, d: ["report", "--study", "s", "--storage", "grpc://127.0.0.1:9"], 1,
        "no storage proxy answers at grpc://127.0.0.1:9"),
    "a storage proxy in front of a journal file": Case(
        lambda t, d: ["storage-proxy", "--storage", f"journal:///{t}/optuna.journal"], 2,
        "a storage proxy fronts a database server (postgresql://user@host/database), not a journal file"),
    "a storage proxy in front of a SQLite file": Case(
        lambda t, d: ["storage-proxy", "--storage", f"sqlite:///{t}/optuna.db"], 2,
        "a storage proxy fronts a database server (postgresql://user@host/database), not a SQLite file"),
    "a storage proxy on port 0": Case(
        lambda t, d: ["storage-proxy", "--storage", "postgresql://127.0.0.1:9/x", "--port", "0"], 2,
        "--port 0: a port is 1 to 65535"),
    "a storage proxy URL with a user and password": Case(
        lambda t, d: ["run", str(tiny(t, d)), "--storage", "grpc://user:SECRET@127.0.0.1:13000"], 2,
        "grpc://127.0.0.1:13000: a storage proxy's URL takes no user or password"),
    "a storage proxy URL with an unclosed IPv6 bracket": Case(
        lambda t, d: ["run", str(tiny(t, d)), "--storage", "grpc://[::1:13000"], 2,
        "grpc://[::1:13000: a storage proxy's URL is grpc://HOST:PORT, e.g. grpc://127.0.0.1:13000 or grpc://[::1]:"),
    "a storage proxy on a host that does not exist": Case(
        lambda t, d: ["storage-proxy", "--storage", "postgresql://127.0.0.1:9/x", "--host", "nosuchhost.invalid"], 2,
        "--host nosuchhost.invalid: no such host ("),
    "a storage proxy on another machine's address": Case(
        lambda t, d: ["storage-proxy", "--storage", "postgresql://127.0.0.1:9/x", "--host", "192.0.2.1"], 2,
        "--host 192.0.2.1: not an address of this machine (Cannot assign requested address)"),
    "a storage proxy in front of an unreachable database with a password": Case(
        lambda t, d: ["storage-proxy", "--storage", "postgresql://user:SECRET@127.0.0.1:9/x", "--port",
                      str(free_port())], 1, "sweep: error: cannot open the study storage postgresql://127.0.0.1:9/x: "),
}



@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny export folder for the predict cases: a .keras model with the real model's input."""
    import keras

    from pipeline.data.records import InputSpec
    from pipeline.hyperparameters import Hyperparameters
    from pipeline.model import build_model
    from pipeline.preprocessing import fit_stats

    folder = tmp_path_factory.mktemp("model")
    images = np.zeros((4, 28, 28), np.uint8)
    build_model(Hyperparameters(units=4), InputSpec((28, 28), "uint8"), 10, fit_stats(images)).save(folder / "model.keras")
    assert isinstance(keras.saving.load_model(folder / "model.keras"), keras.Model)
    return folder


@pytest.mark.parametrize("name", CASES, ids=str)
def test_bad_input_gets_one_line_the_right_status_and_leaves_nothing(name, tmp_path, data_dir, model_dir, capsys,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default stores would land here
    case = CASES[name]
    before = set(tmp_path.iterdir())
    argv = case.make(tmp_path, model_dir if name.startswith("predict") else data_dir)
    written = set(tmp_path.iterdir()) - before
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == case.status, err
    assert err.startswith("sweep: error: ") and err.count("\n") == 1 and len(err) < 2000, err
    assert case.message in err, err
    left = {p.name for p in set(tmp_path.iterdir()) - before - written}
    assert left <= set(case.leaves), f"left behind: {left}"
    assert not Path("/nonexistent").exists()


def test_the_shipped_sweep_files_are_not_bad_inputs():
    for path in SWEEPS.glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["study"]["name"]
