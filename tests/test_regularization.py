"""Regularisers (`kernel_regularizer`, ...) act in every rule that trains
the weights they sit on, or the rule refuses them; never silently ignored."""

import keras
import numpy as np
import pytest

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


@pytest.mark.parametrize("rule", BLOCK_RULES)
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
