"""Loading TensorFlow: quietly, and with a cap on its CPU threads, before anything else touches it.

Its C++ start-up lines (cudart_stub.cc, cuda_platform.cc, absl's "All log messages before ...") are
written straight to file descriptor 2, whatever TF_CPP_MIN_LOG_LEVEL says, so they are silenced at the
descriptor while TensorFlow loads and finds its devices; `--verbose` shows them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Iterator


def load_tensorflow(verbose: bool = False, threads: int | None = None) -> None:
    """Every command that runs a model calls this first: `sweep run`'s workers, `export` and `predict`."""
    quiet = contextlib.nullcontext if verbose else _native_stderr_silenced
    with quiet():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery prints the CUDA lines; do it now, silenced
    if threads:
        _set_threads(tf, threads)  # before the first op, and heard: it warns when TensorFlow had started already
    with quiet():
        # The first op creates the devices: on a machine with CUDA's driver and no usable GPU, that is where
        # "failed call to cuInit" is written, and otherwise it would come with the first model loaded.
        tf.zeros(())
    if not verbose:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. retracing warnings after each trial
    # A table's model keys its inputs by column name, and a name Keras cannot give a layer ("/" in it) makes
    # Keras warn at every build and load, though it maps the inputs by key all the same.
    warnings.filterwarnings("ignore", message="When providing `inputs` as a dict")


def _set_threads(tf, count: int) -> None:
    """Workers sharing a machine must not oversubscribe its cores. Only possible before TensorFlow runs
    its first op; a process that has already trained keeps its counts, and says so."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(min(count, 2))
    except RuntimeError:
        warnings.warn(f"TensorFlow has already started; it keeps its thread counts instead of {count}")


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
