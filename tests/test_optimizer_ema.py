"""Keras's weight averaging (`Adam(use_ema=True)`) works with every rule:
the optimizer averages the weights each local step produced, `fit` ends
with the averages in the model, and `SwapEMAWeights` evaluates them."""

import keras
import numpy as np
import pytest

from tests.small_models import BLOCK_RULES, rule_model
from tests.test_step_purity import BUILDERS

RULES = BLOCK_RULES + ("zeroth_order",) + tuple(BUILDERS)
MOMENTUM = 0.7
STEPS = 4


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8 * STEPS, 6)).astype("float32"), rng.integers(0, 3, 8 * STEPS)


def _model(rule, **adam):
    model, loss = BUILDERS[rule]() if rule in BUILDERS else rule_model(rule)
    model.compile(optimizer=keras.optimizers.Adam(0.05, **adam), loss=loss)
    model.build((None, 6))
    return model


def _weights(model):
    return [keras.ops.convert_to_numpy(v).astype("float64") for v in model.trainable_variables]


@pytest.mark.parametrize("rule", RULES)
def test_fit_ends_with_the_moving_average_of_the_local_steps(rule):
    x, y = _data()
    # The trajectory without averaging, step by step.
    plain = _model(rule)
    start = _weights(plain)
    average = None
    for step in range(STEPS):
        plain.train_on_batch(x[8 * step: 8 * step + 8], y[8 * step: 8 * step + 8])
        current = _weights(plain)
        # Keras's rule: the first step copies, then m * average + (1 - m) * w.
        average = current if average is None else [
            MOMENTUM * a + (1 - MOMENTUM) * w for a, w in zip(average, current)
        ]
    last = current
    averaged = _model(rule, use_ema=True, ema_momentum=MOMENTUM)
    for a, b in zip(start, _weights(averaged)):
        np.testing.assert_array_equal(a, b)  # the same initial weights
    averaged.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    moved = False
    for variable, want, got, end in zip(
        averaged.trainable_variables, average, _weights(averaged), last
    ):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=variable.path)
        moved |= not np.allclose(want, end, atol=1e-5)
    assert moved, "the average must differ from the last step's weights"


def test_swap_callback_validates_the_averaged_weights():
    x, y = _data()
    model = _model("local_loss", use_ema=True, ema_momentum=MOMENTUM)
    history = model.fit(
        x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, validation_data=(x, y),
        callbacks=[keras.callbacks.SwapEMAWeights(swap_on_epoch=True)],
    )
    # `fit` leaves the averages in the model; the last validation, run with
    # the averages swapped in, must have seen exactly these weights.
    averages = model.optimizer._model_variables_moving_average
    for a, w in zip(averages, _weights(model)):
        np.testing.assert_allclose(w, keras.ops.convert_to_numpy(a), rtol=1e-6, atol=1e-7)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        history.history["val_loss"][-1], rel=1e-5
    )
