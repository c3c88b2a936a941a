"""Small models (6 features, 3 classes) that several tests train:
`small_model` gives the three the backend-contract tests use (local-loss,
zeroth-order, Forward-Forward); `rule_model` one two-block model per rule,
with an optional kernel regulariser. Importable from a subprocess run in
the repository root."""

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


BLOCK_RULES = (
    "forward_forward_softplus", "forward_forward_symba", "single_forward",
    "drtp", "tpsgd", "direct_feedback_alignment", "local_loss",
)


def rule_model(rule, regularizer=None):
    """`(model, loss)`: an uncompiled two-block model of `rule` (one of
    `BLOCK_RULES` or "zeroth_order"), seeded, every kernel regularised by
    `regularizer`; `loss` as in `small_model`."""
    keras.utils.set_random_seed(0)

    def dense(units, activation=None):
        return keras.layers.Dense(
            units, activation=activation, kernel_regularizer=regularizer
        )

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if rule.startswith("forward_forward"):
        model = keras_local.ForwardForwardModel(
            blocks=[dense(8, "relu"), dense(8, "relu")], num_classes=3,
            loss=rule.split("_")[-1], seed=0,
        )
        return model, None
    if rule in ("drtp", "tpsgd"):
        model = keras_local.TargetProjectionModel(
            [dense(8, "tanh"), dense(3)], num_classes=3, rule=rule
        )
        return model, loss
    if rule == "local_loss":
        net = keras.Sequential(
            [keras.Input((6,)), dense(8, "relu"), dense(8, "relu"), dense(3)]
        )
        return keras_local.LocalLossModel(net, num_modules=2, seed=0), loss
    if rule == "single_forward":
        model = keras_local.SingleForwardModel(
            blocks=[dense(8, "relu"), dense(8, "relu")], num_classes=3
        )
        return model, None
    if rule == "zeroth_order":
        net = keras.Sequential([keras.Input((6,)), dense(3)])
        return keras_local.ZerothOrderModel(net, seed=0), loss
    if rule == "direct_feedback_alignment":
        model = keras_local.DirectFeedbackAlignmentModel(
            [dense(8, "tanh"), dense(3)], num_classes=3
        )
        return model, loss
    raise ValueError(
        f"Unknown rule. Expected one of {BLOCK_RULES + ('zeroth_order',)}. "
        f"Received: rule={rule!r}"
    )
