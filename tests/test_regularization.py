"""Regularisers (`kernel_regularizer`, ...) act in every rule that trains
the weights they sit on, or the rule refuses them; never silently ignored."""

import keras
import numpy as np
import pytest

import keras_local

LR, LAMBDA = 0.1, 0.3


def _model(rule, regularizer):
    keras.utils.set_random_seed(0)
    dense = lambda units, activation=None: keras.layers.Dense(
        units, activation=activation, kernel_regularizer=regularizer
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if rule.startswith("forward_forward"):
        model = keras_local.ForwardForwardModel(
            blocks=[dense(8, "relu"), dense(8, "relu")], num_classes=3,
            loss=rule.split("_")[-1], seed=0,
        )
        loss = None
    elif rule in ("drtp", "tpsgd"):
        model = keras_local.TargetProjectionModel(
            [dense(8, "tanh"), dense(3)], num_classes=3, rule=rule
        )
    elif rule == "local_loss":
        net = keras.Sequential([keras.Input((6,)), dense(8, "relu"), dense(8, "relu"), dense(3)])
        model = keras_local.LocalLossModel(net, num_modules=2, seed=0)
    elif rule == "single_forward":
        model = keras_local.SingleForwardModel(blocks=[dense(8, "relu"), dense(8, "relu")], num_classes=3)
        loss = None
    elif rule == "zeroth_order":
        model = keras_local.ZerothOrderModel(keras.Sequential([keras.Input((6,)), dense(3)]), seed=0)
    else:  # direct feedback alignment
        model = keras_local.DirectFeedbackAlignmentModel([dense(8, "tanh"), dense(3)], num_classes=3)
    model.compile(optimizer=keras.optimizers.SGD(LR), loss=loss)
    model.build((None, 6))
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 3, 16)


def _step(model):
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    model.train_on_batch(*_data())
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    return before, [a - b for a, b in zip(after, before)]


@pytest.mark.parametrize(
    "rule",
    [
        "forward_forward_softplus", "forward_forward_symba", "single_forward",
        "drtp", "tpsgd", "direct_feedback_alignment", "local_loss",
    ],
)
def test_l2_regularizer_adds_its_exact_gradient_to_the_local_update(rule):
    # L2(lambda) adds lambda * sum(w**2) to the loss of the block that owns
    # w, so one SGD step moves w by an extra -lr * 2 * lambda * w, and no
    # other weight moves differently.
    start, plain = _step(_model(rule, None))
    model = _model(rule, keras.regularizers.L2(LAMBDA))
    start_again, regularized = _step(model)
    regularized_count = 0
    for variable, w, a, b in zip(model.trainable_variables, start, plain, regularized):
        extra = -LR * 2 * LAMBDA * w if variable.regularizer is not None else 0.0
        regularized_count += variable.regularizer is not None
        np.testing.assert_allclose(b - a, extra, rtol=1e-4, atol=1e-6, err_msg=variable.path)
    assert regularized_count >= 2
    for w, w_again in zip(start, start_again):
        np.testing.assert_array_equal(w, w_again)


def test_zeroth_order_refuses_regularizers():
    # Its loss queries do not include them (one of its paths perturbs the
    # weights inside each layer's forward, where a regulariser reading the
    # variables would see them unperturbed): refused, not ignored.
    rule = "zeroth_order"
    model = _model(rule, keras.regularizers.L2(LAMBDA))
    with pytest.raises(ValueError, match=r"would be silently ignored: \[.*kernel.*\]. Received: a model with regularisers"):
        model.train_on_batch(*_data())
    # Without regularisers they train as before.
    _model(rule, None).train_on_batch(*_data())
