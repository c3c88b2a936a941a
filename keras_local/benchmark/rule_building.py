"""The pieces every benchmark rule's builder shares: the MLP and the
compile call."""

import keras


def mlp_layers(spec):
    return [keras.layers.Dense(u, activation="relu") for u in spec.hidden_units]


def mlp_classifier(spec):
    """The benchmark's MLP: flatten (images), the hidden ReLU layers, logits."""
    return keras.Sequential(
        [keras.Input(spec.input_shape)]
        + ([keras.layers.Flatten()] if len(spec.input_shape) > 1 else [])
        + mlp_layers(spec)
        + [keras.layers.Dense(spec.num_classes)]
    )


def compile_rule(model, spec, loss=True, optimizer=None, weighted=False):
    """Compiles a rule's model the way every benchmark rule is compiled.

    Args:
        model: the `keras.Model` a rule builder made.
        spec: the `BenchmarkSpec` (learning rate, `jit_compile`).
        loss: bool, whether the model trains on the compiled cross-entropy
            of logits (rules whose loss is built in, such as
            Forward-Forward, pass `False`).
        optimizer: a `keras.optimizers.Optimizer`; defaults to Adam at the
            spec's learning rate.
        weighted: bool, whether accuracy is a weighted metric (graphs:
            the sample weights mask the nodes outside the split).

    Returns:
        The compiled `model`.
    """
    if optimizer is None:
        optimizer = keras.optimizers.Adam(spec.learning_rate)
    metrics = {"weighted_metrics" if weighted else "metrics": ["accuracy"]}
    model.compile(
        optimizer=optimizer,
        loss=(keras.losses.SparseCategoricalCrossentropy(from_logits=True)
              if loss else None),
        jit_compile=spec.jit_compile,
        **metrics,
    )
    return model
