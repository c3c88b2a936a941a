"""What every benchmark rule is built from."""

import dataclasses


@dataclasses.dataclass
class BenchmarkSpec:
    """The shared settings of one benchmark run.

    Attributes:
        dataset: data set name (`"mnist"`, `"cifar10"`, `"digits"`, ...).
        input_shape: shape of one input, without the batch axis (MNIST and
            digits come flattened: `(784,)`, `(64,)`; CIFAR-10 as images).
        num_classes: int.
        hidden_units: widths of the hidden blocks, shared by all rules.
        learning_rate: float.
        seed: int.
        jit_compile: passed to `compile`.
    """

    dataset: str
    input_shape: tuple
    num_classes: int
    hidden_units: tuple = (500, 500)
    learning_rate: float = 1e-3
    seed: int = 0
    jit_compile: object = "auto"
