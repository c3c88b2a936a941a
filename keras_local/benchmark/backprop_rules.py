"""The baseline: the same layers trained end to end by `fit`."""

import keras

from keras_local.benchmark.registry import register_rule


def mlp_layers(spec):
    return [keras.layers.Dense(u, activation="relu") for u in spec.hidden_units]


@register_rule("backprop")
def build_backprop(spec):
    model = keras.Sequential(
        [keras.Input(spec.input_shape)]
        + ([keras.layers.Flatten()] if len(spec.input_shape) > 1 else [])
        + mlp_layers(spec)
        + [keras.layers.Dense(spec.num_classes)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(spec.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=spec.jit_compile,
    )
    return model
