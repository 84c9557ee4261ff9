"""What a trained model costs to ship: parameters, saved size and prediction latency, measured the same
way for every trial and cheaply (about half a second: mostly tracing two batch shapes, and one save).

Latency is for the model that is served, raw input to probabilities, through Keras' compiled predict
step (`predict_on_batch`, what a server calls per request): a warm-up, then the median of repeated calls,
per image, at batch 1 and at batch 256, on this machine's CPU with the worker's thread count recorded.
Timings are the one noisy figure here; docs/benchmarks.md gives their spread over repeats.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np

from pipeline import keys
from pipeline.model import model_inputs

WARM_UP, CALLS_B1, CALLS_B256 = 3, 30, 5


def measure(model, examples: np.ndarray) -> dict[str, float]:
    """The model's costs; `examples` are raw inputs as the model takes them (a few are enough)."""
    import tensorflow as tf

    size = _saved_bytes(model)
    threads = tf.config.threading.get_intra_op_parallelism_threads()  # 0: TensorFlow's default, every core
    return {keys.PARAMS_COUNT: int(model.count_params()), keys.MODEL_BYTES: size, keys.MODEL_MB: size / 1e6,
            keys.LATENCY_B1: _per_image_ms(model, _batch(examples, 1), CALLS_B1),
            keys.LATENCY_B256: _per_image_ms(model, _batch(examples, 256), CALLS_B256),
            keys.LATENCY_THREADS: threads or os.cpu_count() or 1}


def _saved_bytes(model) -> int:
    """The size of the model as a .keras file: what `sweep export` writes and MLflow stores."""
    with tempfile.TemporaryDirectory(prefix="sweep-size-") as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        return os.path.getsize(path)


def _batch(examples: np.ndarray, size: int):
    rows = np.resize(np.arange(len(examples)), size)  # repeats the examples when there are fewer
    return model_inputs(examples[rows])


def _per_image_ms(model, batch, calls: int) -> float:
    images = len(next(iter(batch.values())) if isinstance(batch, dict) else batch)
    for _ in range(WARM_UP):
        model.predict_on_batch(batch)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / images
