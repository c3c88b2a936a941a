"""Target projection (DRTP, tpSGD), feedback alignment and DFA."""

import os
import runpy

import keras
import numpy as np
import pytest

from keras_local import backend
from keras_local.layers.feedback_alignment import FeedbackAlignment
from keras_local.models.direct_feedback_alignment_model import (
    DirectFeedbackAlignmentModel,
)
from keras_local.models.target_projection_model import TargetProjectionModel
from tests.conftest import BACKEND
from tests.conftest import require_data

LR = 0.1
GUIDE = os.path.join(
    os.path.dirname(__file__), "..", "guides", "target_projection.py"
)


def _sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(rng, n=16, d=6, k=3):
    x = rng.normal(size=(n, d)).astype("float32")
    y = rng.integers(0, k, size=n)
    return x, y


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _tp_model(rule="drtp", local_loss=None, hidden=5, k=3, d=6, **kwargs):
    model = TargetProjectionModel(
        [keras.layers.Dense(hidden, activation="tanh"), keras.layers.Dense(k)],
        num_classes=k, rule=rule, local_loss=local_loss, seed=3, **kwargs,
    )
    model.build((None, d))
    model.compile(optimizer=keras.optimizers.SGD(LR), loss=_sparse_ce())
    return model


def _reference_hidden_grad(rule, local_loss, x, y_onehot, w, b, proj):
    """NumPy gradient of the hidden block's local loss w.r.t. (W, b)."""
    n = len(x)
    h = np.tanh(x @ w + b)
    t = y_onehot @ proj
    if rule == "drtp":
        dh = -t / n
    elif local_loss == "mse":
        dh = 2.0 * (h - t) / (n * h.shape[1])
    elif local_loss == "categorical_crossentropy":
        dh = (_softmax(h) - _softmax(t)) / n
    else:  # binary_crossentropy
        dh = (_sigmoid(h) - _sigmoid(t)) / (n * h.shape[1])
    da = dh * (1.0 - h**2)
    return x.T @ da, da.sum(0), h


@pytest.mark.parametrize(
    "rule,local_loss",
    [
        ("drtp", None),
        ("tpsgd", "mse"),
        ("tpsgd", "categorical_crossentropy"),
        ("tpsgd", "binary_crossentropy"),
    ],
)
def test_dense_update_matches_numpy(rng, rule, local_loss):
    x, y = _data(rng)
    model = _tp_model(rule, local_loss)
    w, b = model.blocks[0].get_weights()
    wo, bo = model.blocks[-1].get_weights()
    proj = keras.ops.convert_to_numpy(model.projections[0])
    y_onehot = np.eye(3)[y]
    dw, db, h = _reference_hidden_grad(rule, local_loss, x, y_onehot, w, b, proj)
    # The output block learns from the task loss on the detached input.
    e = (_softmax(h @ wo + bo) - y_onehot) / len(x)
    model.train_on_batch(x, y)
    new = model.blocks[0].get_weights() + model.blocks[-1].get_weights()
    np.testing.assert_allclose(new[0], w - LR * dw, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new[1], b - LR * db, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new[2], wo - LR * h.T @ e, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new[3], bo - LR * e.sum(0), rtol=1e-4, atol=1e-5)


def test_one_hot_labels_give_the_same_update(rng):
    x, y = _data(rng)
    a = _tp_model("tpsgd", "mse")
    b_model = _tp_model("tpsgd", "mse")
    b_model.set_weights(a.get_weights())
    b_model.compile(
        optimizer=keras.optimizers.SGD(LR),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    a.train_on_batch(x, y)
    b_model.train_on_batch(x, np.eye(3, dtype="float32")[y])
    for u, v in zip(a.get_weights(), b_model.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_block_update_is_local(rng):
    """Block 0's update does not depend on the blocks above it."""
    x, y = _data(rng)
    w0 = rng.normal(size=(6, 5)).astype("float32")
    updates = []
    for scale in (1.0, -3.0):
        model = TargetProjectionModel(
            [
                keras.layers.Dense(5, activation="tanh"),
                keras.layers.Dense(4, activation="tanh"),
                keras.layers.Dense(3),
            ],
            num_classes=3, rule="drtp", seed=3,
        )
        model.build((None, 6))
        model.compile(optimizer=keras.optimizers.SGD(LR), loss=_sparse_ce())
        model.blocks[0].set_weights([w0, np.zeros(5, "float32")])
        for block in model.blocks[1:]:
            block.set_weights([scale * w for w in block.get_weights()])
        model.train_on_batch(x, y)
        updates.append(model.blocks[0].get_weights()[0] - w0)
    np.testing.assert_allclose(updates[0], updates[1], rtol=1e-5, atol=1e-7)
    assert np.abs(updates[0]).max() > 0


def test_projections_fixed_seeded_and_saved(rng, tmp_path):
    x, y = _data(rng, n=64)
    model = _tp_model("drtp")
    twin = _tp_model("drtp")
    before = [keras.ops.convert_to_numpy(p).copy() for p in model.projections]
    for p, q in zip(before, twin.projections):
        np.testing.assert_array_equal(p, keras.ops.convert_to_numpy(q))
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    after = [keras.ops.convert_to_numpy(p) for p in model.projections]
    for p, q in zip(before, after):
        np.testing.assert_array_equal(p, q)
    assert not any(v.trainable for v in model.projections)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for p, q in zip(before, loaded.projections):
        np.testing.assert_array_equal(p, keras.ops.convert_to_numpy(q))
    np.testing.assert_allclose(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6
    )
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for u, v in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    for p, q in zip(before, loaded.projections):
        np.testing.assert_array_equal(p, keras.ops.convert_to_numpy(q))


def test_feedback_alignment_gradients_are_b_transpose_e(rng):
    x, y = _data(rng, n=8, d=4)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            FeedbackAlignment(keras.layers.Dense(5, activation="tanh"), seed=1),
            FeedbackAlignment(keras.layers.Dense(3), seed=2),
        ]
    )
    fa1, fa2 = model.layers
    w1, b1 = fa1.layer.get_weights()
    w2, b2 = fa2.layer.get_weights()
    fb1 = keras.ops.convert_to_numpy(fa1.feedback)
    fb2 = keras.ops.convert_to_numpy(fa2.feedback)
    assert [id(v) for v in model.trainable_variables] == [
        id(v) for v in (fa1.layer.kernel, fa1.layer.bias, fa2.layer.kernel,
                        fa2.layer.bias)
    ]
    assert not np.allclose(fb2, w2)
    loss_fn = _sparse_ce()
    ntv = [v.value for v in model.non_trainable_variables]

    def loss(params, inputs):
        out, _ = model.stateless_call(params, ntv, inputs, training=True)
        return loss_fn(keras.ops.convert_to_tensor(y), out)

    def input_loss(params):
        return loss(tv, params[0])

    tv = [v.value for v in model.trainable_variables]
    _, grads = backend.value_and_grad(loss)(tv, keras.ops.convert_to_tensor(x))
    grads = [keras.ops.convert_to_numpy(g) for g in grads]
    h = np.tanh(x @ w1 + b1)
    e = (_softmax(h @ w2 + b2) - np.eye(3)[y]) / len(x)
    np.testing.assert_allclose(grads[2], h.T @ e, rtol=1e-4, atol=1e-6)
    delta1 = (e @ fb2.T) * (1 - h**2)  # B^T e, not W^T e
    np.testing.assert_allclose(grads[0], x.T @ delta1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1], delta1.sum(0), rtol=1e-4, atol=1e-6)
    _, (dx,) = backend.value_and_grad(input_loss)([keras.ops.convert_to_tensor(x)])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(dx), delta1 @ fb1.T, rtol=1e-4, atol=1e-6
    )


def test_feedback_alignment_trains_and_saves(rng, tmp_path):
    x, y = _data(rng, n=64, d=4)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            FeedbackAlignment(keras.layers.Dense(8, activation="relu"), seed=1),
            FeedbackAlignment(keras.layers.Dense(3), seed=2),
        ]
    )
    model.compile(optimizer="adam", loss=_sparse_ce())
    fb = keras.ops.convert_to_numpy(model.layers[1].feedback).copy()
    model.fit(x, y, epochs=2, verbose=0)
    np.testing.assert_array_equal(
        fb, keras.ops.convert_to_numpy(model.layers[1].feedback)
    )
    model.save(tmp_path / "fa.keras")
    loaded = keras.models.load_model(tmp_path / "fa.keras")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6
    )
    with pytest.raises(ValueError, match="Received: layer of type LSTM"):
        FeedbackAlignment(keras.layers.LSTM(3))
    with pytest.raises(ValueError, match="Received: layer="):
        FeedbackAlignment("dense")
    with pytest.raises(TypeError, match="Received: seed="):
        FeedbackAlignment(keras.layers.Dense(3), seed=1.5)
    norm = FeedbackAlignment(keras.layers.BatchNormalization())
    with pytest.raises(ValueError, match="include a `kernel`"):
        norm.build((None, 4))
    frozen = keras.layers.Dense(3)
    frozen.trainable = False
    with pytest.raises(ValueError, match="with `trainable=False`. Leave a frozen"):
        FeedbackAlignment(frozen).build((None, 4))


def _conv_valid(x, k):
    """NumPy 'valid' 2D convolution (cross-correlation, channels last)."""
    kh, kw = k.shape[:2]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], oh, ow, k.shape[-1]))
    for a in range(kh):
        for b in range(kw):
            out += np.einsum("nijc,co->nijo", x[:, a:a + oh, b:b + ow], k[a, b])
    return out


def _conv_input_grad(g, k, x_shape):
    """NumPy gradient of sum(g * conv(x, k)) with respect to x."""
    dx = np.zeros(x_shape)
    oh, ow = g.shape[1:3]
    for a in range(k.shape[0]):
        for b in range(k.shape[1]):
            dx[:, a:a + oh, b:b + ow] += np.einsum("nijo,co->nijc", g, k[a, b])
    return dx


def _conv_kernel_grad(g, x, k_shape):
    """NumPy gradient of sum(g * conv(x, k)) with respect to k."""
    dk = np.zeros(k_shape)
    oh, ow = g.shape[1:3]
    for a in range(k_shape[0]):
        for b in range(k_shape[1]):
            dk[a, b] = np.einsum("nijc,nijo->co", x[:, a:a + oh, b:b + ow], g)
    return dk


def test_feedback_alignment_conv2d_gradients_are_b_transpose_e(rng):
    """Conv2D under FA: the error sent below is the transposed convolution
    of the local error with B (not W); the kernel keeps its true gradient."""
    x = rng.normal(size=(3, 6, 5, 2)).astype("float32")
    y = rng.integers(0, 3, size=3)
    model = keras.Sequential(
        [
            keras.Input((6, 5, 2)),
            FeedbackAlignment(
                keras.layers.Conv2D(4, 3, activation="tanh"), seed=1
            ),
            FeedbackAlignment(keras.layers.Conv2D(2, (2, 3)), seed=2),
            keras.layers.Flatten(),
            FeedbackAlignment(keras.layers.Dense(3), seed=3),
        ]
    )
    conv1, conv2, _, dense = model.layers
    k1, c1 = conv1.layer.get_weights()
    k2, c2 = conv2.layer.get_weights()
    w3, b3 = dense.layer.get_weights()
    fb1, fb2, fb3 = (
        keras.ops.convert_to_numpy(layer.feedback)
        for layer in (conv1, conv2, dense)
    )
    assert fb1.shape == k1.shape and fb2.shape == k2.shape
    assert not np.allclose(fb2, k2)
    loss_fn = _sparse_ce()
    ntv = [v.value for v in model.non_trainable_variables]
    tv = [v.value for v in model.trainable_variables]

    def loss(params, inputs):
        out, _ = model.stateless_call(params, ntv, inputs, training=True)
        return loss_fn(keras.ops.convert_to_tensor(y), out)

    xt = keras.ops.convert_to_tensor(x)
    _, grads = backend.value_and_grad(loss)(tv, xt)
    grads = [keras.ops.convert_to_numpy(g) for g in grads]
    _, (dx,) = backend.value_and_grad(lambda p: loss(tv, p[0]))([xt])

    h1 = np.tanh(_conv_valid(x, k1) + c1)
    h2 = _conv_valid(h1, k2) + c2
    flat = h2.reshape(len(x), -1)
    e = (_softmax(flat @ w3 + b3) - np.eye(3)[y]) / len(x)
    g2 = (e @ fb3.T).reshape(h2.shape)  # through B3, not W3
    g1 = _conv_input_grad(g2, fb2, h1.shape) * (1 - h1**2)  # through B2
    dx_ref = _conv_input_grad(g1, fb1, x.shape)  # through B1
    tol = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[4], flat.T @ e, **tol)
    np.testing.assert_allclose(grads[5], e.sum(0), **tol)
    np.testing.assert_allclose(grads[2], _conv_kernel_grad(g2, h1, k2.shape), **tol)
    np.testing.assert_allclose(grads[3], g2.sum((0, 1, 2)), **tol)
    np.testing.assert_allclose(grads[0], _conv_kernel_grad(g1, x, k1.shape), **tol)
    np.testing.assert_allclose(grads[1], g1.sum((0, 1, 2)), **tol)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dx), dx_ref, **tol)


def test_feedback_alignment_conv2d_trains_compiled(rng, tmp_path):
    x = rng.normal(size=(32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=32)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            FeedbackAlignment(
                keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                seed=1,
            ),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            FeedbackAlignment(keras.layers.Dense(3), seed=2),
        ]
    )
    model.compile(
        optimizer="adam", loss=_sparse_ce(),
        jit_compile=BACKEND in ("jax", "tensorflow"),
    )
    feedback = [keras.ops.convert_to_numpy(v).copy()
                for v in model.non_trainable_variables]
    before = [keras.ops.convert_to_numpy(v).copy()
              for v in model.trainable_variables]
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for u, v in zip(before, model.trainable_variables):
        assert not np.allclose(u, keras.ops.convert_to_numpy(v))
    for u, v in zip(feedback, model.non_trainable_variables):
        np.testing.assert_array_equal(u, keras.ops.convert_to_numpy(v))
    model.save(tmp_path / "fa_conv.keras")
    loaded = keras.models.load_model(tmp_path / "fa_conv.keras")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6
    )
    for u, v in zip(feedback, loaded.non_trainable_variables):
        np.testing.assert_array_equal(u, keras.ops.convert_to_numpy(v))


def test_dfa_update_is_b_transpose_e(rng, tmp_path):
    x, y = _data(rng)
    model = DirectFeedbackAlignmentModel(
        [keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(3)],
        num_classes=3, seed=4,
    )
    model.build((None, 6))
    model.compile(optimizer=keras.optimizers.SGD(LR), loss=_sparse_ce())
    w, b = model.blocks[0].get_weights()
    wo, bo = model.blocks[-1].get_weights()
    proj = keras.ops.convert_to_numpy(model.projections[0])
    assert proj.shape == (3, 5)
    h = np.tanh(x @ w + b)
    e = (_softmax(h @ wo + bo) - np.eye(3)[y]) / len(x)
    da = (e @ proj) * (1 - h**2)
    model.train_on_batch(x, y)
    new = model.blocks[0].get_weights() + model.blocks[-1].get_weights()
    np.testing.assert_allclose(new[0], w - LR * x.T @ da, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new[1], b - LR * da.sum(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new[2], wo - LR * h.T @ e, rtol=1e-4, atol=1e-6)
    model.save(tmp_path / "dfa.keras")
    loaded = keras.models.load_model(tmp_path / "dfa.keras")
    np.testing.assert_array_equal(
        proj, keras.ops.convert_to_numpy(loaded.projections[0])
    )


def test_dfa_on_a_sequential_conv_model_is_b_transpose_e(rng):
    """DFA mode on every layer of a Sequential model with a Conv2D: the
    conv kernel's update is its local gradient under the feedback e B
    (reshaped to the feature map), computed in NumPy."""
    x = rng.normal(size=(5, 6, 5, 2)).astype("float32")
    y = rng.integers(0, 3, size=5)
    sequential = keras.Sequential(
        [
            keras.Input((6, 5, 2)),
            keras.layers.Conv2D(4, 3, activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    model = DirectFeedbackAlignmentModel(sequential, num_classes=3, seed=5)
    model.build((None, 6, 5, 2))
    model.compile(optimizer=keras.optimizers.SGD(LR), loss=_sparse_ce())
    k, c = model.blocks[0].get_weights()
    wo, bo = model.blocks[-1].get_weights()
    proj = keras.ops.convert_to_numpy(model.projections[0])
    assert proj.shape == (3, 4 * 3 * 4)
    h = np.tanh(_conv_valid(x, k) + c)
    flat = h.reshape(len(x), -1)
    e = (_softmax(flat @ wo + bo) - np.eye(3)[y]) / len(x)
    delta = (e @ proj).reshape(h.shape) * (1 - h**2)
    model.train_on_batch(x, y)
    new = model.blocks[0].get_weights() + model.blocks[-1].get_weights()
    tol = dict(rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        new[0], k - LR * _conv_kernel_grad(delta, x, k.shape), **tol
    )
    np.testing.assert_allclose(new[1], c - LR * delta.sum((0, 1, 2)), **tol)
    np.testing.assert_allclose(new[2], wo - LR * flat.T @ e, **tol)
    np.testing.assert_allclose(new[3], bo - LR * e.sum(0), **tol)


@pytest.mark.parametrize(
    "layer,targets",
    [
        (keras.layers.SimpleRNN, "every_step"),
        (keras.layers.GRU, "final"),
        (keras.layers.LSTM, "every_step"),
    ],
)
def test_recurrent_blocks_train_compiled(rng, layer, targets):
    x = rng.normal(size=(32, 5, 3)).astype("float32")
    y = rng.integers(0, 3, size=32)
    model = TargetProjectionModel(
        [layer(6, return_sequences=True), layer(6), keras.layers.Dense(3)],
        num_classes=3, rule="tpsgd", recurrent_targets=targets, seed=0,
    )
    # torch.compile of recurrent layers takes minutes on CPU: the compiled
    # run is checked on JAX and TensorFlow, eager on torch.
    jit = BACKEND in ("jax", "tensorflow")
    model.compile(optimizer="adam", loss=_sparse_ce(), jit_compile=jit)
    model.build((None, 5, 3))
    before = [keras.ops.convert_to_numpy(v).copy()
              for v in model.trainable_variables]
    proj = [keras.ops.convert_to_numpy(p).copy() for p in model.projections]
    assert [p.shape for p in proj] == [(3, 6), (3, 6)]
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    assert set(history) >= {"loss", "block_0_loss", "block_1_loss", "block_2_loss"}
    assert np.all(np.isfinite(history["loss"]))
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert all(not np.allclose(u, v) for u, v in zip(before, after))
    for p, q in zip(proj, model.projections):
        np.testing.assert_array_equal(p, keras.ops.convert_to_numpy(q))


@pytest.mark.parametrize("targets", ["final", "every_step"])
def test_simple_rnn_update_matches_numpy_bptt_compiled(rng, targets):
    """tpSGD (MSE) on a SimpleRNN block, compiled on JAX and TF: the update
    is the NumPy back-propagation through time of the block's own loss
    against the projected target (at the final state, or every step)."""
    n, steps, d, u = 5, 4, 2, 3
    x = rng.normal(size=(n, steps, d)).astype("float32")
    y = rng.integers(0, 3, size=n)
    every = targets == "every_step"
    model = TargetProjectionModel(
        [
            keras.layers.SimpleRNN(u, return_sequences=every),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ],
        num_classes=3, rule="tpsgd", local_loss="mse",
        recurrent_targets=targets, seed=2,
    )
    model.build((None, steps, d))
    model.compile(
        optimizer=keras.optimizers.SGD(LR), loss=_sparse_ce(),
        jit_compile=BACKEND in ("jax", "tensorflow"),
    )
    kernel, recurrent, bias = model.blocks[0].get_weights()
    target = np.eye(3)[y] @ keras.ops.convert_to_numpy(model.projections[0])
    hs = [np.zeros((n, u))]
    for t in range(steps):
        hs.append(np.tanh(x[:, t] @ kernel + hs[-1] @ recurrent + bias))
    dk, dr, db = np.zeros_like(kernel), np.zeros_like(recurrent), np.zeros(u)
    dh = np.zeros((n, u))
    for t in reversed(range(steps)):
        if every:
            dh = dh + 2 * (hs[t + 1] - target) / (n * u * steps)
        elif t == steps - 1:
            dh = dh + 2 * (hs[t + 1] - target) / (n * u)
        da = dh * (1 - hs[t + 1] ** 2)
        dk += x[:, t].T @ da
        dr += hs[t].T @ da
        db += da.sum(0)
        dh = da @ recurrent.T
    model.train_on_batch(x, y)
    new = model.blocks[0].get_weights()
    tol = dict(rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new[0], kernel - LR * dk, **tol)
    np.testing.assert_allclose(new[1], recurrent - LR * dr, **tol)
    np.testing.assert_allclose(new[2], bias - LR * db, **tol)


@pytest.mark.parametrize("targets,shape", [("feature_map", (3, 36 * 4)),
                                           ("pooled", (3, 4))])
def test_conv_blocks(rng, targets, shape):
    x = rng.normal(size=(16, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, size=16)
    model = TargetProjectionModel(
        [
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ],
        num_classes=3, rule="drtp", conv_targets=targets, seed=0,
    )
    model.compile(optimizer="adam", loss=_sparse_ce())
    history = model.fit(x, y, epochs=1, verbose=0).history
    assert [tuple(p.shape) for p in model.projections] == [shape]
    assert "block_1_loss" not in history  # Flatten has nothing to learn
    assert np.isfinite(history["block_0_loss"][0])


def test_grid_targets_update_matches_numpy(rng):
    """tpSGD (MSE) on a per-position dense block `(n, 4, 4, 2) -> (n, 4, 4,
    3)` whose output is averaged over a 2 x 2 grid of 2 x 2 cells."""
    n, units, grid = 8, 3, 2
    x = rng.normal(size=(n, 4, 4, 2)).astype("float32")
    y = rng.integers(0, 3, size=n)
    model = TargetProjectionModel(
        [
            keras.layers.Dense(units, activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ],
        num_classes=3, rule="tpsgd", local_loss="mse", conv_targets="pooled",
        conv_target_grid=grid, seed=0,
    )
    model.build((None, 4, 4, 2))
    model.compile(optimizer=keras.optimizers.SGD(LR), loss=_sparse_ce())
    assert tuple(model.projections[0].shape) == (3, grid * grid * units)
    clone = TargetProjectionModel.from_config(model.get_config())
    assert clone.conv_target_grid == grid
    w, b = model.blocks[0].get_weights()
    proj = keras.ops.convert_to_numpy(model.projections[0])
    h = np.tanh(x @ w + b)
    cells = h.reshape(n, grid, 2, grid, 2, units).mean(axis=(2, 4))
    r = cells.reshape(n, -1)
    t = np.eye(3)[y] @ proj
    dr = (2.0 * (r - t) / (n * r.shape[1])).reshape(n, grid, 1, grid, 1, units)
    dh = np.broadcast_to(dr / 4.0, (n, grid, 2, grid, 2, units)).reshape(h.shape)
    da = dh * (1.0 - h**2)
    dw = np.einsum("nijd,niju->du", x, da)
    db = da.sum(axis=(0, 1, 2))
    model.train_on_batch(x, y)
    new_w, new_b = model.blocks[0].get_weights()
    np.testing.assert_allclose(new_w, w - LR * dw, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new_b, b - LR * db, rtol=1e-4, atol=1e-5)


def test_grid_targets_bad_input():
    blocks = [keras.layers.Conv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(3)]
    with pytest.raises(ValueError, match="only applies to conv_targets='pooled'"):
        TargetProjectionModel(blocks, 3, conv_target_grid=2)
    with pytest.raises(ValueError, match="must be an int >= 1"):
        TargetProjectionModel(blocks, 3, conv_targets="pooled", conv_target_grid=0)
    model = TargetProjectionModel(
        blocks, 3, conv_targets="pooled", conv_target_grid=4
    )
    # 8x8 input, 3x3 valid conv: 6x6 maps, which 4 cells cannot split.
    with pytest.raises(ValueError, match=r"Received: spatial shape \(6, 6\) and grid=4"):
        model.build((None, 8, 8, 2))


def test_bad_input():
    dense = [keras.layers.Dense(4), keras.layers.Dense(3)]
    with pytest.raises(ValueError, match="Unknown `rule`"):
        TargetProjectionModel(dense, 3, rule="backprop")
    with pytest.raises(ValueError, match="Unknown `local_loss`"):
        TargetProjectionModel(dense, 3, rule="tpsgd", local_loss="hinge_loss_x")
    with pytest.raises(ValueError, match="only used by rule='tpsgd'"):
        TargetProjectionModel(dense, 3, rule="drtp", local_loss="mse")
    model = TargetProjectionModel(
        dense, 3, projection_shapes=[(5,), None]
    )
    with pytest.raises(ValueError, match="cannot match its output"):
        model.build((None, 6))
    conv = TargetProjectionModel(
        [keras.layers.Conv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(3)],
        3, conv_targets="pooled", projection_shapes=[(6, 6, 4), None, None],
    )
    with pytest.raises(ValueError, match="cannot match its output"):
        conv.build((None, 8, 8, 2))
    model = TargetProjectionModel(
        [keras.layers.Dense(4), keras.layers.Dense(3)], 3
    )
    model.compile(optimizer="adam", loss=_sparse_ce())
    x = np.zeros((4, 6), "float32")
    with pytest.raises(ValueError, match="Labels must lie"):
        model.fit(x, np.array([0, 1, 2, 7]), verbose=0)


@pytest.mark.parametrize(
    "model_class", [TargetProjectionModel, DirectFeedbackAlignmentModel]
)
def test_output_width_must_match_num_classes(model_class):
    # Five logits for ten classes would index past the logits in the loss.
    model = model_class([keras.layers.Dense(4), keras.layers.Dense(5)], 10)
    with pytest.raises(ValueError, match=r"Received: output block .* shape \(None, 5\) with num_classes=10"):
        model.build((None, 6))
    sequence = model_class(
        [keras.layers.Dense(4), keras.layers.Reshape((2, 2))], 2
    )
    with pytest.raises(ValueError, match=r"Received: output block .*\(None, 2, 2\)"):
        sequence.build((None, 6))
    # One sigmoid unit for two classes is a valid binary classifier.
    binary = model_class(
        [keras.layers.Dense(4, activation="tanh"),
         keras.layers.Dense(1, activation="sigmoid")], 2, seed=0,
    )
    binary.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    history = binary.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_mnist_learns():
    require_data("mnist.npz")
    from keras_local.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    x = x[:3000].reshape(-1, 784).astype("float32") / 255.0
    xt = xt[:1000].reshape(-1, 784).astype("float32") / 255.0
    y, yt = y[:3000], yt[:1000]
    for rule, local_loss in (("drtp", None), ("tpsgd", "mse")):
        model = TargetProjectionModel(
            [keras.layers.Dense(256, activation="tanh"), keras.layers.Dense(10)],
            num_classes=10, rule=rule, local_loss=local_loss, seed=0,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3), loss=_sparse_ce(),
            metrics=["accuracy"],
        )
        model.fit(x, y, epochs=3, batch_size=50, verbose=0)
        accuracy = model.evaluate(xt, yt, verbose=0)[1]
        assert accuracy > 0.8, (rule, accuracy)


def test_guide_runs(monkeypatch):
    require_data("mnist.npz")
    monkeypatch.setenv("KERAS_LOCAL_SHRINK", "1")
    runpy.run_path(GUIDE, run_name="__main__")
