"""Bench row j: what the CPU can do against what a trial's training gets out of it.

The matmul throughput NumPy and TensorFlow reach here (float32, 2048 x 2048), then epochs of Keras training
on the full Fashion-MNIST training split for three Dense models, with each epoch's floating-point work
(forward 2 x weights per image, training about 3 x forward) turned into the GFLOP/s it achieved. Run
through bench/run.py (issue 15's throughput paragraph)."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json, time, gzip, numpy as np
from pipeline.tensorflow_setup import load_tensorflow
load_tensorflow()
import tensorflow as tf, keras
from pipeline.data.idx import read_idx
from pathlib import Path

def best_of(fn, repeats=5):
    fn(); times = []
    for _ in range(repeats):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    return min(times)

n = 2048
a = np.random.default_rng(0).random((n, n), dtype=np.float32)
flop = 2 * n ** 3
numpy_gflops = flop / best_of(lambda: a @ a) / 1e9
ta = tf.constant(a)
tf_gflops = flop / best_of(lambda: tf.linalg.matmul(ta, ta).numpy()) / 1e9
x = read_idx(Path("{data}/train-images-idx3-ubyte.gz"))[:54000].reshape(54000, 784).astype("float32") / 255
y = read_idx(Path("{data}/train-labels-idx1-ubyte.gz"))[:54000]
models = []
for units, layers, batch in ((128, 1, 32), (512, 2, 256), (1024, 3, 512)):
    keras.utils.set_random_seed(0)
    stack = [keras.Input((784,))] + [keras.layers.Dense(units, activation="relu") for _ in range(layers)]
    model = keras.Sequential(stack + [keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=batch, verbose=0)  # warm-up: tracing
    start = time.perf_counter(); model.fit(x, y, epochs=2, batch_size=batch, verbose=0)
    epoch_s = (time.perf_counter() - start) / 2
    weights = sum(int(np.prod(w.shape)) for w in model.trainable_weights if len(w.shape) == 2)
    gflop_epoch = 3 * 2 * weights * len(x) / 1e9
    models.append(dict(units=units, layers=layers, batch=batch, weights=weights, epoch_s=epoch_s,
                       gflop_per_epoch=gflop_epoch, gflops=gflop_epoch / epoch_s))
print(json.dumps(dict(numpy_gflops=numpy_gflops, tf_gflops=tf_gflops, models=models)))
"""


def row_j(data_dir: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CODE.format(data=data_dir)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def render_j(r: dict) -> list[str]:
    peak = max(r["numpy_gflops"], r["tf_gflops"])
    rows = [f"| {m['units']} x {m['layers']}, batch {m['batch']} | {m['weights']:,} | {m['gflop_per_epoch']:.0f} | "
            f"{m['epoch_s']:.2f} | {1 / m['epoch_s']:.2f} | {m['gflops']:.0f} | {100 * m['gflops'] / peak:.0f}% |"
            for m in r["models"]]
    return ["## j. Training throughput against the CPU's capacity", "",
            f"A float32 2048 x 2048 matmul reaches **{r['numpy_gflops']:.0f} GFLOP/s** in NumPy and "
            f"**{r['tf_gflops']:.0f} GFLOP/s** in TensorFlow on this machine's 2 cores. One epoch of Keras "
            "training on the 54,000 training images (plain Keras, no pipeline; work counted as 3 x the forward "
            "pass's 2 x weights per image):", "",
            "| model | weights | GFLOP per epoch | s per epoch | epochs/s | GFLOP/s reached | of matmul peak |",
            "| --- | --- | --- | --- | --- | --- | --- |", *rows, "",
            f"Reading: with batches of 256-512, wide layers reach {100 * r['models'][-1]['gflops'] / peak:.0f}% of the "
            "matmul peak (the rest goes to element-wise work and the optimizer's updates); the reference model's "
            f"batch of 32 reaches {100 * r['models'][0]['gflops'] / peak:.0f}%, most of each of its 1,688 steps being "
            "per-step overhead. The default sweep searches batches of 128-512, the efficient end: its epochs are "
            "bound by the CPU, not by the pipeline, whose cost is per trial (row a) and per process (row d).", ""]
