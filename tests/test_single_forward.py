"""Single-forward (SF) and top-down SF: loss vs NumPy, top-down signal,
save/load, bad input, a small real MNIST run, the guide."""

import os
import runpy

import keras
import numpy as np
import pytest
from keras import ops

from keras_local import backend
from keras_local.models.single_forward_model import SingleForwardModel
from keras_local.rules import single_forward as sf
from tests.conftest import require_data

GUIDES = os.path.join(os.path.dirname(__file__), "..", "guides")


def np_sf_loss(a, c, y, t, w=None):
    a = a.reshape(len(a), -1)
    c = c.reshape(len(c), -1)
    logits = a @ c.T / t
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per = -logp[np.arange(len(y)), y]
    if w is not None:
        per = per * w
    return per.mean()


def test_sf_loss_matches_numpy(rng):
    a = rng.normal(size=(6, 2, 3)).astype("float32")
    c = rng.normal(size=(4, 2, 3)).astype("float32")
    y = np.array([0, 3, 1, 2, 2, 0])
    w = rng.uniform(size=6).astype("float32")
    for t in (1.0, 0.3):
        got = ops.convert_to_numpy(sf.single_forward_loss(a, c, y, t))
        np.testing.assert_allclose(got, np_sf_loss(a, c, y, t), rtol=1e-5)
    got = ops.convert_to_numpy(sf.single_forward_loss(a, c, y, 0.5, w))
    np.testing.assert_allclose(got, np_sf_loss(a, c, y, 0.5, w), rtol=1e-5)
    n = ops.convert_to_numpy(sf.row_normalize(a))
    np.testing.assert_allclose(
        n, a / (np.linalg.norm(a.reshape(6, -1), axis=1)[:, None, None] + 1e-8), rtol=1e-6
    )
    assert sf.alternating_groups(5) == [[0, 2, 4], [1, 3]]
    assert sf.alternating_groups(3, alternating=False) == [[0, 1, 2]]


def _dense_model(rule, **kwargs):
    return SingleForwardModel(
        [keras.layers.Dense(8, activation="relu"), keras.layers.Dense(6, activation="relu")],
        num_classes=3, rule=rule, seed=0, **kwargs,
    )


def _np_dense(layer, x):
    w, b = [ops.convert_to_numpy(v) for v in layer.weights]
    return np.maximum(x @ w + b, 0.0)


def _np_norm(x):
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def test_plain_sf_block_losses_match_numpy(rng):
    x = rng.normal(size=(5, 4)).astype("float32")
    y = np.array([0, 1, 2, 1, 0])
    model = _dense_model("sf", temperature=0.5)
    model.build((None, 4))
    emb = ops.convert_to_numpy(model.class_embeddings)
    np.testing.assert_allclose(emb, sf.initial_class_embeddings(3, (4,), 0))
    _, _, total, y_pred, logs = model.local_grads(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], x, y, None,
    )
    rows = np.concatenate([x, emb])
    h1 = _np_dense(model.blocks[0], _np_norm(rows))
    h2 = _np_dense(model.blocks[1], _np_norm(h1))
    l1 = np_sf_loss(h1[:5], h1[5:], y, 0.5)
    l2 = np_sf_loss(h2[:5], h2[5:], y, 0.5)
    np.testing.assert_allclose(ops.convert_to_numpy(logs["block_0_loss"]), l1, rtol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(logs["block_1_loss"]), l2, rtol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(total), l1 + l2, rtol=1e-4)


def test_topdown_signal_is_previous_step_activity_without_gradient(rng):
    x = rng.normal(size=(5, 4)).astype("float32")
    y = np.array([0, 1, 2, 1, 0])
    model = _dense_model("sf_topdown")
    model.build((None, 4))
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    # NumPy: the bottom-up states from the current (previous step's) weights.
    emb = ops.convert_to_numpy(model.class_embeddings)
    rows = np.concatenate([x, emb])
    b0, b1 = model.blocks
    h1 = _np_dense(b0, np.concatenate([_np_norm(rows), np.zeros((8, 6))], 1))
    h2 = _np_dense(b1, np.concatenate([_np_norm(h1), np.zeros((8, 3))], 1))
    states = model.topdown_states(tv, ntv, x)
    np.testing.assert_allclose(ops.convert_to_numpy(states[1]), h1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(states[2]), h2, rtol=1e-4, atol=1e-6)
    top = np.concatenate([np.full((5, 3), 1 / 3), np.eye(3)])
    np.testing.assert_allclose(ops.convert_to_numpy(states[3]), top, rtol=1e-6)
    # Block 0's gradient equals that of its loss on [x, h2_previous] with the
    # top-down part a constant: no gradient reaches it through block 1.
    grads, _, _, _, logs = model.local_grads(tv, ntv, x, y, None)
    top_down = _np_norm(h2).astype("float32")
    inputs = np.concatenate([_np_norm(rows), top_down], 1).astype("float32")

    def loss0(params):
        out = ops.relu(ops.matmul(inputs, params[0]) + params[1])
        return sf.single_forward_loss(out[:5], out[5:], y)

    value, expected = backend.value_and_grad(loss0)(list(tv[:2]))
    np.testing.assert_allclose(ops.convert_to_numpy(logs["block_0_loss"]), ops.convert_to_numpy(value), rtol=1e-5)
    for g, e in zip(grads[:2], expected):
        np.testing.assert_allclose(ops.convert_to_numpy(g), ops.convert_to_numpy(e), rtol=1e-4, atol=1e-6)
    # Block 1 (odd) sees block 0's new activity of this step and the labels.
    new_h1 = np.maximum(inputs @ ops.convert_to_numpy(tv[0]) + ops.convert_to_numpy(tv[1]), 0)
    inputs1 = np.concatenate([_np_norm(new_h1), _np_norm(top)], 1).astype("float32")

    def loss1(params):
        out = ops.relu(ops.matmul(inputs1, params[0]) + params[1])
        return sf.single_forward_loss(out[:5], out[5:], y)

    value1, _ = backend.value_and_grad(loss1)(list(tv[2:4]))
    np.testing.assert_allclose(ops.convert_to_numpy(logs["block_1_loss"]), ops.convert_to_numpy(value1), rtol=1e-4)


@pytest.mark.parametrize("rule", ["sf", "sf_topdown"])
def test_save_load_and_resume(tmp_path, rng, rule):
    x = rng.normal(size=(32, 12)).astype("float32")
    y = rng.integers(0, 3, 32)
    model = _dense_model(rule, learn_class_embeddings=(rule == "sf"))
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    history = loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert "block_1_loss" in history.history


def test_conv_blocks_with_plain_sf(rng):
    x = rng.uniform(size=(16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 16)
    model = SingleForwardModel([keras.layers.Conv2D(4, 3, activation="relu")], 3, seed=0)
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.predict(x, verbose=0).shape == (16, 3)


def test_bad_input():
    with pytest.raises(ValueError, match="rule"):
        _dense_model("sf_bottom")
    with pytest.raises(ValueError, match="temperature"):
        _dense_model("sf", temperature=0.0)
    model = _dense_model("sf_topdown")
    with pytest.raises(ValueError, match="Flatten"):
        model.predict(np.zeros((2, 4, 4, 1), "float32"))
    model = _dense_model("sf")
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="lie in"):
        model.fit(np.zeros((4, 5), "float32"), np.array([0, 1, 2, 3]), verbose=0)


@pytest.mark.parametrize("rule", ["sf", "sf_topdown"])
def test_real_mnist_learns(rule):
    require_data("mnist.npz")
    from keras_local.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    x = x[:1000].reshape(-1, 784).astype("float32") / 255.0
    xt = xt[:500].reshape(-1, 784).astype("float32") / 255.0
    model = SingleForwardModel(
        [keras.layers.Dense(128, activation="relu")] * 1 + [keras.layers.Dense(128, activation="relu")],
        10, rule=rule, temperature=0.1, seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x, y[:1000], batch_size=50, epochs=3, verbose=0)
    _, accuracy = model.evaluate(xt, yt[:500], verbose=0)
    assert accuracy > 0.6  # chance is 0.1


def test_guide_runs_shrunk(monkeypatch):
    require_data("mnist.npz")
    monkeypatch.setenv("KERAS_LOCAL_SHRINK", "1")
    runpy.run_path(os.path.join(GUIDES, "forward_forward.py"), run_name="__main__")
