"""What every benchmark rule is built from."""

import dataclasses

import keras


@dataclasses.dataclass
class BenchmarkSpec:
    """The shared settings of one benchmark run.

    Attributes:
        dataset: data set name (`"mnist"`, `"cifar10"`, `"digits"`, ...).
        input_shape: shape of one input, without the batch axis (MNIST and
            digits come flattened: `(784,)`, `(64,)`; CIFAR-10 as images).
        num_classes: int.
        hidden_units: widths of the hidden blocks, shared by all rules.
        learning_rate: float, or a `keras.optimizers.schedules.LearningRateSchedule`
            (the runner's `schedule="cosine"` passes a `CosineDecay`), used
            as every rule's optimizer learning rate.
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


def scale_learning_rate(learning_rate, factor):
    """`factor` times a learning rate that may be a float or a `CosineDecay`."""
    if isinstance(learning_rate, keras.optimizers.schedules.CosineDecay):
        config = learning_rate.get_config()
        config["initial_learning_rate"] *= factor
        return keras.optimizers.schedules.CosineDecay.from_config(config)
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        raise TypeError(
            "Only a float or a CosineDecay learning rate can be scaled. "
            f"Received: learning_rate={learning_rate!r}"
        )
    return factor * learning_rate
