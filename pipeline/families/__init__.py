"""The network between a model's preprocessing layers and its task's output layer, chosen by `model.family`.

Each family is a small module with the same two functions:
- `body(params, features, inputs)`: the preprocessed, flattened features (a Keras tensor) and the model's
  InputSpec in, the last hidden tensor out (the task adds the output layer);
- `refusal(inputs)`: why the family cannot take these inputs (a string naming the problem), or None; a worker
  asks it once the data is loaded, before any store is opened.
A user's own builder (`model.builder`) is not a family: it makes the whole network (pipeline.builders).
"""

from pipeline.families import cnn, dense

FAMILIES = {"dense": dense, "cnn": cnn}
