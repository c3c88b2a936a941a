"""Regularisers (`kernel_regularizer`, ...) act in every rule that trains
the weights they sit on, or the rule refuses them; never silently ignored."""

import keras
import numpy as np
import pytest

import keras_local
from tests.small_models import BLOCK_RULES, rule_model

LR, LAMBDA = 0.1, 0.3


def _model(rule, regularizer):
    model, loss = rule_model(rule, regularizer)
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


@pytest.mark.parametrize("rule", BLOCK_RULES + ("zeroth_order",))
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
    assert regularized_count >= (1 if rule == "zeroth_order" else 2)
    for w, w_again in zip(start, start_again):
        np.testing.assert_array_equal(w, w_again)


@pytest.mark.parametrize(
    "options",
    [
        {"estimator": "forward_gradient"},
        {"first_order_layers": ["head"]},
        {"sign": True},
    ],
    ids=["forward_gradient", "hybrid", "sign"],
)
def test_zeroth_order_adds_the_exact_regularizer_gradient(options):
    # Not estimated: the regulariser's exact gradient joins the estimate
    # (before the sign, for ZO-SGD-Sign), on zeroth-order and first-order
    # weights alike; the loss queries are those without regularisers.
    x, y = _data()

    def model(regularizer, **overrides):
        keras.utils.set_random_seed(0)
        net = keras.Sequential([
            keras.Input((6,)),
            keras.layers.Dense(8, activation="tanh", kernel_regularizer=regularizer),
            keras.layers.Dense(3, kernel_regularizer=regularizer, name="head"),
        ])
        m = keras_local.ZerothOrderModel(net, seed=0, **{**options, **overrides})
        m.compile(optimizer=keras.optimizers.SGD(LR), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.build((None, 6))
        return m

    regularized_model = model(keras.regularizers.L2(LAMBDA))
    weights, raw = _step(model(None, sign=False))
    estimate = [-d / LR for d in raw]  # the unregularised estimate g
    expected = []
    for g, w, v in zip(estimate, weights, regularized_model.trainable_variables):
        total = g + (2 * LAMBDA * w if v.regularizer is not None else 0.0)
        expected.append(-LR * (np.sign(total) if options.get("sign") else total))
    _, regularized = _step(regularized_model)
    for variable, e, r in zip(regularized_model.trainable_variables, expected, regularized):
        np.testing.assert_allclose(r, e, rtol=1e-4, atol=1e-6, err_msg=variable.path)


def test_zeroth_order_refuses_activity_regularizers():
    # Their value depends on the activations, which the loss queries would
    # have to include: refused, not ignored.
    net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activity_regularizer="l2")])
    model = keras_local.ZerothOrderModel(net, seed=0)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"would be ignored: \['dense.* \(activity_regularizer\)'\]. Received: a model with activity regularisers"):
        model.train_on_batch(*_data())
def _auglocal(regularizer):
    # AugLocal's auxiliary network copies later layers, regularisers included.
    keras.utils.set_random_seed(0)
    dense = lambda units, activation=None: keras.layers.Dense(
        units, activation=activation, kernel_regularizer=regularizer
    )
    net = keras.Sequential([keras.Input((6,)), dense(8, "relu"), dense(8, "relu"), dense(8, "relu"), dense(3)])
    model = keras_local.LocalLossModel(net, num_modules=2, auxiliary="auglocal", seed=0)
    model.compile(optimizer=keras.optimizers.SGD(LR), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.build((None, 6))
    return model


@pytest.mark.parametrize("rule", BLOCK_RULES + ("zeroth_order", "auglocal"))
def test_evaluate_adds_the_networks_regularisation_as_keras_does(rule):
    # Keras's `evaluate` reports the compiled loss plus the model's
    # regularisation losses; so do the rules, counting the network's
    # weights only (not an auxiliary network's).
    make = _auglocal if rule == "auglocal" else lambda r: _model(rule, r)
    plain, regularized = make(None), make(keras.regularizers.L2(LAMBDA))
    x, y = _data()
    difference = regularized.evaluate(x, y, batch_size=16, verbose=0) - plain.evaluate(x, y, batch_size=16, verbose=0)
    network = regularized.inference_model() if rule in ("local_loss", "auglocal") else regularized
    kernels = [keras.ops.convert_to_numpy(v) for v in network.trainable_variables if v.regularizer is not None]
    assert kernels
    if rule == "auglocal":
        assert len(kernels) < sum(v.regularizer is not None for v in regularized.trainable_variables)
    np.testing.assert_allclose(difference, LAMBDA * sum(np.sum(k**2) for k in kernels), rtol=1e-5)


def test_evaluate_adds_activity_regularisation_of_the_prediction_pass():
    keras.utils.set_random_seed(0)
    layers = lambda reg: [keras.layers.Dense(8, activation="tanh", activity_regularizer=reg), keras.layers.Dense(3)]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    models = []
    for reg in (None, keras.regularizers.L1(LAMBDA)):
        keras.utils.set_random_seed(0)
        model = keras_local.TargetProjectionModel(layers(reg), num_classes=3, rule="drtp")
        model.compile(optimizer="sgd", loss=loss)
        model.build((None, 6))
        models.append(model)
    x, y = _data()
    hidden = keras.ops.convert_to_numpy(models[1].blocks[0](x))
    # Keras's L1 activity regulariser: lambda * sum|h|, divided by the batch size.
    expected = LAMBDA * np.sum(np.abs(hidden)) / len(x)
    difference = models[1].evaluate(x, y, batch_size=16, verbose=0) - models[0].evaluate(x, y, batch_size=16, verbose=0)
    np.testing.assert_allclose(difference, expected, rtol=1e-5)
