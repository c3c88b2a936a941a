"""The three small models (6 features, 3 classes) that several backend-
contract tests train: one local-loss, one zeroth-order, one Forward-Forward.
Importable from a subprocess run in the repository root."""

import keras

import keras_local

RULES = ("local_loss", "zeroth_order", "forward_forward")


def small_model(rule):
    """`(model, loss)`: the uncompiled model of `rule` and the loss to
    compile it with (`None` for Forward-Forward, which has its own)."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if rule == "local_loss":
        net = keras.Sequential([
            keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3),
        ])
        return keras_local.LocalLossModel(net, num_modules=2, auxiliary="dgl"), loss
    if rule == "zeroth_order":
        net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
        return keras_local.ZerothOrderModel(net, seed=0), loss
    if rule == "forward_forward":
        model = keras_local.ForwardForwardModel(
            blocks=[keras.layers.Dense(8, activation="relu")], num_classes=3
        )
        return model, None
    raise ValueError(f"Unknown rule. Expected one of {RULES}. Received: rule={rule!r}")
