"""The baseline for row a: the reference model in plain Keras, no pipeline, same data and split.

Usage: python bench/bare_keras.py DATA_DIR  (prints when each phase ended, as JSON, then the test accuracy)
"""

import gzip
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
from sklearn.model_selection import train_test_split


def read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


folder = Path(sys.argv[1])
x = read_idx(folder / "train-images-idx3-ubyte.gz", 16).reshape(-1, 784) / 255.0
y = read_idx(folder / "train-labels-idx1-ubyte.gz", 8)
x_test = read_idx(folder / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784) / 255.0
y_test = read_idx(folder / "t10k-labels-idx1-ubyte.gz", 8)
x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.1, stratify=y, random_state=42)
loaded = time.time()
keras.utils.set_random_seed(42)
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dropout(0.2), keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=5, batch_size=32, verbose=0)
trained = time.time()
accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
print(json.dumps({"loaded": loaded, "trained": trained, "evaluated": time.time()}))
print(accuracy)
