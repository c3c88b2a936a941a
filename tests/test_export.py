"""`model.export(...)` after `fit`, for serving: the artifact reloaded
outside Keras gives `predict`'s scores, on every backend (TensorFlow's
SavedModel on TensorFlow and JAX, `torch.export` on PyTorch)."""

import keras
import numpy as np
import pytest

import keras_local
from tests.conftest import BACKEND
from tests.small_models import BLOCK_RULES
from tests.small_models import rule_model


def _functional_local_loss():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    h = keras.layers.Dense(8, activation="relu")(h)
    net = keras.Model(inputs, keras.layers.Dense(3)(h))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return keras_local.CheckpointedBackpropModel(net, num_modules=2), loss


def _served(model, path, x):
    """The exported artifact's outputs for `x`, reloaded without Keras."""
    if BACKEND == "torch":
        import torch

        model.export(path + ".pt2", format="torch", verbose=False)
        program = torch.export.load(path + ".pt2").module()
        # Keras exports a PyTorch program for a batch of one.
        return np.concatenate([
            program(torch.tensor(x[i : i + 1])).detach().numpy() for i in range(len(x))
        ])
    import tensorflow as tf

    model.export(path, verbose=False)
    artifact = tf.saved_model.load(path)  # held: its variables die with it
    return artifact.serve(tf.constant(x)).numpy()


@pytest.mark.parametrize("rule", BLOCK_RULES + ("zeroth_order", "functional_local_loss"))
def test_exported_model_serves_predict_scores(tmp_path, rule):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.integers(0, 3, 16)
    if rule == "functional_local_loss":
        model, loss = _functional_local_loss()
    else:
        model, loss = rule_model(rule)
    # No metrics: a rule without a compiled loss is then never called by
    # `fit` itself, and `export` needs the input signature of a call.
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    served = _served(model, str(tmp_path / "artifact"), x)
    np.testing.assert_allclose(
        served, np.asarray(model.predict(x, verbose=0)), rtol=1e-5, atol=1e-6
    )


def _physical_model(function):
    from keras_local.layers import BlackBox

    return keras_local.PhysicalForwardForwardModel(
        [BlackBox(function)], [keras.layers.Dense(8, activation="relu")],
        num_classes=3, seed=0, label_scale=5.0,
    )


def test_a_numpy_black_box_is_refused_with_a_clear_error(tmp_path):
    # Its Python call cannot live in an artifact (a TF SavedModel would be
    # written and then fail to load in another process).
    from keras_local.layers import SimulatedPhysicalSystem

    rng = np.random.default_rng(0)
    x, y = rng.random((16, 6)).astype("float32"), rng.integers(0, 3, 16)
    model = _physical_model(SimulatedPhysicalSystem(6, 8, noise=0.0, seed=1))
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"NumPy black box\(es\) \['black_box"):
        _served(model, str(tmp_path / "artifact"), x)
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_keras_black_box_exports(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 6)).astype("float32"), rng.integers(0, 3, 16)
    model = _physical_model(lambda t: keras.ops.tanh(2.0 * t))
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    served = _served(model, str(tmp_path / "artifact"), x)
    np.testing.assert_allclose(
        served, np.asarray(model.predict(x, verbose=0)), rtol=1e-5, atol=1e-6
    )
