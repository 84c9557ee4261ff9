"""Will the data fit? An estimate of what the sweep's workers hold, checked against the memory available
before anything is decoded or trained, so a dataset too large fails in a second with the figures instead
of an hour later in the kernel's OOM killer.

Per worker: about 1 GiB for TensorFlow, Keras, MLflow and Optuna (a worker training a small model peaks
at 880-920 MiB, docs/benchmarks.md row e), plus the data three times over: the arrays as loaded, the
train/validation/test split (scikit-learn copies), and the tensor Keras makes of the training inputs for
each fit. On this 2-core, 23.5 GiB machine, with about 22 GiB available, one worker takes a dataset of up
to about 7 GiB as stored: 9 million 28x28 grayscale images or 2.3 million 32x32 colour ones.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import DataError

GIB = 2**30
WORKER_BASELINE = 1 * GIB
DATA_COPIES = 3


def needed_bytes(data_bytes: int, workers: int) -> int:
    return workers * (WORKER_BASELINE + DATA_COPIES * data_bytes)


def check_fits(data_bytes: int, workers: int, source: str, available: int | None = None) -> None:
    """Refuse data whose estimate exceeds the memory available now (MemAvailable); silent where unknown."""
    available = available_bytes() if available is None else available
    needed = needed_bytes(data_bytes, workers)
    if available is not None and needed > available:
        raise DataError(
            f"{source}: the data takes {data_bytes / GIB:.1f} GiB in memory; {workers} worker(s) would need about "
            f"{needed / GIB:.1f} GiB (each holds the data {DATA_COPIES} times over, plus "
            f"{WORKER_BASELINE / GIB:.0f} GiB for TensorFlow and the rest) but {available / GIB:.1f} GiB is "
            "available: train on data.subset, use fewer --workers, or a machine with more memory")


def available_bytes() -> int | None:
    """The kernel's estimate of memory available without swapping (Linux); None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
