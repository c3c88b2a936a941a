"""`fit` and `evaluate` take Python generators like arrays, on an unbuilt
model, on every backend (TF traces the step before Keras would build the
model from a generator)."""

import keras
import numpy as np
import pytest

import keras_local


def _model(rule):
    keras.utils.set_random_seed(0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if rule == "forward_forward":
        model = keras_local.ForwardForwardModel(
            blocks=[keras.layers.Dense(8, activation="relu")], num_classes=3
        )
        loss = None
    elif rule == "zeroth_order":
        model = keras_local.ZerothOrderModel(keras.Sequential([keras.layers.Dense(3)]), seed=0)
    elif rule == "local_loss":
        net = keras.Sequential([
            keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3),
        ])
        model = keras_local.LocalLossModel(net, num_modules=2, auxiliary="dgl")
    else:
        model = keras_local.TargetProjectionModel(
            [keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)],
            num_classes=3, rule="drtp",
        )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    return model


@pytest.mark.parametrize(
    "rule", ["forward_forward", "zeroth_order", "local_loss", "target_projection"]
)
def test_generator_fit_equals_array_fit(rule):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)

    def batches():
        for _ in range(2):  # two epochs, nothing more
            for i in range(0, 64, 16):
                yield x[i:i + 16], y[i:i + 16]

    from_arrays = _model(rule)
    from_arrays.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    from_generator = _model(rule)
    from_generator.fit(batches(), steps_per_epoch=4, epochs=2, verbose=0)
    # The batch taken to build the model is trained on, once.
    for a, g in zip(from_arrays.trainable_variables, from_generator.trainable_variables):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(g), keras.ops.convert_to_numpy(a), rtol=1e-5, atol=1e-6
        )
    evaluated = from_generator.evaluate(
        (b for b in [(x[:32], y[:32]), (x[32:], y[32:])]), verbose=0
    )
    expected = from_generator.evaluate(x, y, batch_size=32, verbose=0)
    np.testing.assert_allclose(evaluated, expected, rtol=1e-5)


def test_evaluate_builds_an_unbuilt_model_from_a_generator():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 3, 32)
    model = _model("zeroth_order")
    from_generator = model.evaluate((b for b in [(x[:16], y[:16]), (x[16:], y[16:])]), verbose=0)
    np.testing.assert_allclose(from_generator, model.evaluate(x, y, batch_size=16, verbose=0), rtol=1e-5)
