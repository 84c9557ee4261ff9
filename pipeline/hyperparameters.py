"""The hyperparameters a trial is made of: names, domains, defaults (the reference tutorial's model).

Kept apart from Optuna and Keras so that the config loader, the search space and the model builder
all agree on one list, and a trial can always be rebuilt from a plain dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

# Names Keras 3 resolves with keras.activations.get / keras.optimizers.get (a test checks this).
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu", "silu", "swish", "leaky_relu",
               "softplus", "mish")
OPTIMIZERS = ("adam", "adamw", "nadam", "adamax", "rmsprop", "sgd", "adagrad", "adadelta", "lion")
PREPROCESSING = ("normalize", "standardize")


@dataclass(frozen=True)
class Hyperparameters:
    """One trial's complete settings; every trial logs all of them, so runs line up in the UI."""

    units: int = 128
    hidden_layers: int = 1
    dropout: float = 0.2
    activation: str = "relu"
    optimizer: str = "adam"
    learning_rate: float = 0.001
    epochs: int = 5
    batch_size: int = 32
    preprocessing: str = "normalize"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Hyperparameters":
        """Rebuild from logged or stored values, coercing the types MLflow's string params lose."""
        known = {name: HYPERPARAMETERS[name].coerce(v) for name, v in values.items() if name in HYPERPARAMETERS}
        return cls(**known)


Fail = Callable[[str, str], Any]


@dataclass(frozen=True)
class Domain:
    """What one hyperparameter accepts: kind ('int', 'float', 'str') and its bounds or choices."""

    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    choices: tuple = ()

    def coerce(self, value: Any) -> Any:
        return {"int": int, "float": float, "str": str}[self.kind](value)

    def validate(self, value: Any, key: str, fail: Fail) -> Any:
        if self.choices:
            if value not in self.choices:
                fail(key, f"{value!r} is not allowed; allowed: {', '.join(self.choices)}")
            return value
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (self.kind == "int" and not isinstance(value, int)):
            fail(key, f"must be {'an integer' if self.kind == 'int' else 'a number'}, got {value!r}")
        too_high = value >= self.high if self.high_open else value > self.high
        if value < self.low or too_high:
            fail(key, f"{value} is out of range; allowed: {self.describe_range()}")
        return value

    def describe_range(self) -> str:
        return f"[{self.low}, {self.high}{')' if self.high_open else ']'}"


HYPERPARAMETERS: dict[str, Domain] = {
    "units": Domain("int", 128, low=1, high=8192),
    "hidden_layers": Domain("int", 1, low=1, high=8),
    "dropout": Domain("float", 0.2, low=0.0, high=1.0, high_open=True),
    "activation": Domain("str", "relu", choices=ACTIVATIONS),
    "optimizer": Domain("str", "adam", choices=OPTIMIZERS),
    "learning_rate": Domain("float", 0.001, low=1e-7, high=10.0),
    "epochs": Domain("int", 5, low=1, high=1000),
    "batch_size": Domain("int", 32, low=1, high=65536),
    "preprocessing": Domain("str", "normalize", choices=PREPROCESSING),
}
