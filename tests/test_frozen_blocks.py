"""A block the user freezes (`layer.trainable = False`, e.g. a pretrained
feature extractor) keeps its weights under every rule, as it would under
`fit` with backprop, while the blocks after it still learn."""

import keras
import numpy as np
import pytest

from tests.small_models import BLOCK_RULES, rule_model


def _first_dense(model):
    blocks = getattr(model, "blocks", None)
    if blocks is None:  # LocalLossModel: the wrapped network's layers
        blocks = model.network.layers
    return next(b for b in blocks if isinstance(b, keras.layers.Dense))


@pytest.mark.parametrize("rule", BLOCK_RULES)
def test_a_frozen_block_keeps_its_weights_and_the_rest_still_learn(rule):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64).astype("int32")
    model, loss = rule_model(rule)
    frozen = _first_dense(model)
    frozen.trainable = False
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    model.build((None, 6))
    before = {v.path: np.array(v) for v in model.weights}
    frozen_paths = {v.path for v in frozen.weights}
    assert frozen_paths and not frozen_paths & {v.path for v in model.trainable_weights}
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    after = {v.path: np.array(v) for v in model.weights}
    for path in frozen_paths:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    learned = [
        v.path for v in model.trainable_weights
        if not np.array_equal(after[v.path], before[v.path])
    ]
    assert learned, "no trainable weight changed"


def test_a_frozen_batch_norm_keeps_its_statistics_under_local_learning():
    import keras_local

    keras.utils.set_random_seed(0)
    norm = keras.layers.BatchNormalization()
    net = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8), norm, keras.layers.ReLU(),
        keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3),
    ])
    norm.trainable = False  # Keras: a frozen BatchNorm runs in inference mode
    model = keras_local.LocalLossModel(net, num_modules=2, seed=0)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = 3.0 + rng.normal(size=(64, 6)).astype("float32")
    model.fit(x, rng.integers(0, 3, 64), batch_size=16, epochs=1, verbose=0)
    for variable in norm.weights:
        expected = 1.0 if variable.name in ("gamma", "moving_variance") else 0.0
        np.testing.assert_array_equal(np.array(variable), expected, err_msg=variable.path)
