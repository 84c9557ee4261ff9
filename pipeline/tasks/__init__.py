"""What a model predicts, chosen by the sweep file's `task`: each task is a small module with the same names.

- `MODEL_NAME`: the Keras model's name;
- `TEST_METRICS`: the test metrics a trial logs (`keys` names), the first the headline every summary shows,
  with `TEST_DIRECTIONS` saying which way each is better;
- `head(features, n_outputs, stats)`: the output layer(s) on a family's last hidden tensor;
- `finish(outputs, stats)`: what follows a user's builder's output (nothing, or the layer to the label's units);
- `compile_args(params)`: the loss and the per-epoch metrics, for `model.compile`;
- `trainer(model, params, stats)`: the Keras model training fits (the model itself, or regression's network
  before its output's rescaling, so that it fits standardized targets);
- `targets(params, y, n_outputs, stats)`: the labels as training fits them;
- `score(outputs, y)`: the test metrics from the model's outputs on the raw test inputs;
- `figures(y, outputs, output_names)`: the plots a trial logs, (name, matplotlib figure) pairs;
- `report(y, outputs, output_names)`: the per-class (or per-range) table a trial logs, a dict, named `REPORT`.
"""

from pipeline.tasks import classification, regression

TASKS = {"classification": classification, "regression": regression}
