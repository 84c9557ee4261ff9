"""Will the data and the model fit? An estimate of what the sweep's workers hold, checked against the memory available
before anything is decoded or trained, so a dataset too large fails in a second with the figures instead
of an hour later in the kernel's OOM killer.

Per worker: about 1 GiB for TensorFlow, Keras, MLflow and Optuna (a worker training a small model peaks
at 880-920 MiB, docs/benchmarks.md row e), plus the data three times over: the arrays as loaded, the
train/validation/test split (scikit-learn copies), and the tensor Keras makes of the training inputs for
each fit; plus the preprocessing statistics' working set (a 64 MiB float64 block and 48 bytes per input
feature). On this 2-core, 23.5 GiB machine, with about 22 GiB available, one worker takes a dataset of up
to about 7 GiB as stored: 9 million 28x28 grayscale images or 2.3 million 32x32 colour ones.

The model is checked per trial, before it trains (its size follows from the trial's parameters).
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.errors import DataError
from pipeline.preprocessing import stats_bytes

GIB = 2**30
WORKER_BASELINE = 1 * GIB
DATA_COPIES = 3
GENERIC_ADVICE = "use fewer --workers, a smaller dataset, or a machine with more memory"
TRAINING_BYTES_PER_PARAMETER = 12  # float32 gradients and two optimizer slots


class ModelMemoryError(MemoryError):
    """A trial's model too large to train in the memory available; the trial fails, the sweep goes on."""


def needed_bytes(data_bytes: int, workers: int, features: int = 0) -> int:
    """What `workers` processes hold for data of `data_bytes` with `features` inputs per example (0: unknown,
    the statistics' block alone is counted)."""
    return workers * (WORKER_BASELINE + DATA_COPIES * data_bytes + stats_bytes(features))


def check_fits(data_bytes: int, workers: int, source: str, available: int | None = None, features: int = 0,
               advice: str = GENERIC_ADVICE) -> None:
    """Refuse data whose estimate exceeds the memory available now (MemAvailable); silent where unknown."""
    available = available_bytes() if available is None else available
    needed = needed_bytes(data_bytes, workers, features)
    if available is not None and needed > available:
        raise DataError(
            f"{source}: the data takes {data_bytes / GIB:.1f} GiB in memory; {workers} worker(s) would need about "
            f"{needed / GIB:.1f} GiB (each holds the data {DATA_COPIES} times over, plus "
            f"{WORKER_BASELINE / GIB:.0f} GiB for TensorFlow and the rest and {stats_bytes(features) / GIB:.1f} GiB "
            f"for the preprocessing statistics) but {available / GIB:.1f} GiB is available: {advice}")


def check_images_fit(count: int, shape: tuple[int, ...], workers: int, source: str,
                     available: int | None = None) -> None:
    """An image folder before it is decoded; the refusal says what would fit. data.subset would not help:
    it is applied after decoding."""
    available = available_bytes() if available is None else available
    features = math.prod(shape)
    if available is not None and needed_bytes(count * features, workers, features) > available:
        check_fits(count * features, workers, f"{source} ({count} images of {'x'.join(map(str, shape))})",
                   available, features, image_advice(count, shape, workers, available))


def image_advice(count: int, shape: tuple[int, ...], workers: int, available: int) -> str:
    """What would fit, with figures: a smaller image size, grayscale, fewer images, fewer workers."""
    features = math.prod(shape)
    room = available // workers - WORKER_BASELINE - stats_bytes(0)  # per worker, for the data and its statistics
    ways = []
    largest = room // (DATA_COPIES * count + stats_bytes(1) - stats_bytes(0)) if room > 0 else 0
    scale = math.sqrt(largest / features)
    if scale * min(shape[:2]) >= 1:
        ways.append(f"a smaller data.image_size (up to [{int(shape[0] * scale)}, {int(shape[1] * scale)}] fits)")
    if len(shape) == 3 and needed_bytes(count * features // 3, workers, features // 3) <= available:
        ways.append("data.color: grayscale (a third of the memory)")
    fewer = (room - stats_bytes(features) + stats_bytes(0)) // (DATA_COPIES * features) if room > 0 else 0
    if fewer >= 1:
        ways.append(f"fewer images in the folder (up to {fewer} at this size)")
    fitting = available // needed_bytes(count * features, 1, features)
    if 1 <= fitting < workers:
        ways.append(f"fewer --workers ({fitting} fit)")
    ways.append("a machine with more memory")
    return ", ".join(ways[:-1]) + f", or {ways[-1]}" if len(ways) > 1 else ways[0]


def check_model_fits(params_count: int, available: int | None = None) -> None:
    """Refuse, before it trains, a built model whose training state would exceed the memory available now.

    The data check cannot see the model: a Dense layer over 4000x4000 pixels holds 16 million weights a unit.
    The built model holds its float32 weights already; training adds gradients and two optimizer slots
    (Adam's, the most any offered optimizer keeps), 12 more bytes a parameter, and activations on top, so this
    is a floor. A trial refused here fails with the figures, and the sweep goes on with the next."""
    available = available_bytes() if available is None else available
    needed = params_count * TRAINING_BYTES_PER_PARAMETER
    if available is not None and needed > available:
        raise ModelMemoryError(
            f"the model has {params_count:,} parameters; training them needs at least {needed / GIB:.1f} GiB more "
            f"(gradients and optimizer state) but {available / GIB:.1f} GiB is available: narrow the search "
            "space (fewer units or hidden_layers) or use smaller inputs (data.image_size)")


def available_bytes() -> int | None:
    """The kernel's estimate of memory available without swapping (Linux); None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
