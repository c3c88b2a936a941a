"""Every rule under a half-precision dtype policy (`mixed_float16`): local
losses and the sums of squares they read stay in float32, and every model
trains, evaluates and predicts with finite numbers on every backend."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_local
from keras_local.datasets.graph_inputs import graph_batch
from keras_local.rules import forward_forward as ff
from keras_local.rules import single_forward as sf
from keras_local.rules import target_projection as tp
from keras_local.rules.precision import full_precision
from tests.conftest import to_numpy


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    yield
    keras.mixed_precision.set_dtype_policy(previous)


def _large_half_activity():
    # 2000 units of 8: the float16 sum of squares (128000) is past float16's
    # largest value (65504); every other entry is 7.9 so that the result
    # is not a power of two.
    values = np.full((3, 2000), 8.0, "float32")
    values[:, ::2] = 7.9
    values[1] *= 0.5
    return ops.convert_to_tensor(values.astype("float16")), values.astype("float16")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_full_precision_casts_half_floats_only(dtype):
    half = ops.ones((2,), dtype=dtype)
    assert keras.backend.standardize_dtype(full_precision(half).dtype) == "float32"
    for kept in ("float32", "int32"):
        x = ops.ones((2,), dtype=kept)
        assert keras.backend.standardize_dtype(full_precision(x).dtype) == kept


def test_goodness_of_half_activity_is_float32_and_does_not_overflow():
    tensor, values = _large_half_activity()
    reference = np.sum(values.astype("float64") ** 2, axis=1)
    assert reference.max() > np.finfo("float16").max  # float16 could not hold it
    summed = ff.goodness(tensor, "sum")
    assert keras.backend.standardize_dtype(summed.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(summed), reference, rtol=1e-6)
    np.testing.assert_allclose(
        to_numpy(ff.goodness(tensor, "mean")), reference / 2000, rtol=1e-6
    )
    # Channel-wise goodness: 4 classes of 500 units each.
    grouped = to_numpy(ff.channelwise_goodness(tensor, 4, "sum"))
    np.testing.assert_allclose(
        grouped, (values.astype("float64") ** 2).reshape(3, 4, 500).sum(-1), rtol=1e-6
    )


@pytest.mark.parametrize("mode", ["l2", "rms", "layer"])
def test_normalize_length_of_half_activity_is_finite(mode):
    tensor, values = _large_half_activity()
    x = values.astype("float64")
    if mode == "layer":
        x = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((x**2).sum(1, keepdims=True))
    if mode != "l2":
        norm = norm / np.sqrt(x.shape[1])
    out = ff.normalize_length(tensor, mode)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    np.testing.assert_allclose(
        to_numpy(out).astype("float64"), x / (norm + 1e-4), rtol=2e-3, atol=1e-3
    )


def test_single_forward_pieces_of_half_activity():
    tensor, values = _large_half_activity()
    x = values.astype("float64")
    out = sf.row_normalize(tensor)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    np.testing.assert_allclose(
        to_numpy(out).astype("float64"),
        x / np.sqrt((x**2).sum(1, keepdims=True)), rtol=2e-3,
    )
    # Class similarities past float16's range come out in float32.
    logits = sf.similarity_logits(tensor, tensor[:2])
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(logits), x @ x[:2].T, rtol=1e-5)


def test_target_projection_losses_of_half_activity_are_float32():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(4, 6)).astype("float16")
    target = rng.normal(size=(4, 6)).astype("float32")
    reference = np.mean((target - h.astype("float64")) ** 2)
    mse = tp.tpsgd_loss(ops.convert_to_tensor(h), target, "mse")
    assert keras.backend.standardize_dtype(mse.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(mse), reference, rtol=1e-6)
    drtp = tp.drtp_loss(ops.convert_to_tensor(h), target)
    assert keras.backend.standardize_dtype(drtp.dtype) == "float32"
    np.testing.assert_allclose(
        to_numpy(drtp), -np.mean(np.sum(target * h.astype("float64"), -1)), rtol=1e-6
    )


def test_forward_forward_scores_are_float32_goodness_sums(mixed_float16):
    """`predict` under mixed_float16 is the sum over blocks of each block's
    goodness, taken in float32 from its float16 output (the second block's
    goodness alone is past float16's largest value, 65504)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 20)).astype("float32")
    wide = keras.initializers.RandomNormal(stddev=1.0, seed=0)
    model = keras_local.ForwardForwardModel(
        blocks=[keras.layers.Dense(400, activation="relu", kernel_initializer=wide)
                for _ in range(2)],
        num_classes=3, threshold="width", seed=0,
    )
    model.compile(optimizer="adam")
    scores = model.predict(x, verbose=0)
    assert scores.dtype == np.float32
    # NumPy: each candidate label embedded, block by block.
    expected = np.zeros((4, 3))
    for k in range(3):
        h = ff.embed_label(x, np.full((4,), k), 3, model.label_embedding, model.label_scale)
        for block in model.blocks:
            h = block(ff.normalize_length(h, model.normalization))
            expected[:, k] += np.sum(to_numpy(h).astype("float64") ** 2, axis=1)
    assert expected.min() > 65504  # a float16 sum would be inf
    # The blocks' float16 outputs, computed on differently shaped batches,
    # agree to float16's precision (about 1e-3), not float32's.
    np.testing.assert_allclose(scores, expected, rtol=2e-3)


def _dense(units, activation="tanh"):
    return keras.layers.Dense(units, activation=activation)


def _functional():
    inputs = keras.Input((20,))
    h = _dense(16, "relu")(_dense(16, "relu")(inputs))
    return keras.Model(inputs, keras.layers.Dense(4)(h))


_LOGITS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
_MODELS = {
    "forward_forward": lambda: (keras_local.ForwardForwardModel(
        [_dense(16, "relu"), _dense(16, "relu")], num_classes=4, seed=0), None),
    "single_forward": lambda: (keras_local.SingleForwardModel(
        [_dense(16, "relu"), _dense(16, "relu")], num_classes=4, rule="sf_topdown",
        seed=0), None),
    "drtp": lambda: (keras_local.TargetProjectionModel(
        [_dense(16), keras.layers.Dense(4)], num_classes=4, rule="drtp", seed=0), _LOGITS),
    "tpsgd_lstm": lambda: (keras_local.TargetProjectionModel(
        [keras.layers.Reshape((4, 5)), keras.layers.LSTM(8), keras.layers.Dense(4)],
        num_classes=4, rule="tpsgd", seed=0), _LOGITS),
    "dfa": lambda: (keras_local.DirectFeedbackAlignmentModel(
        [_dense(16), keras.layers.Dense(4)], num_classes=4, seed=0), _LOGITS),
    "local_loss": lambda: (keras_local.LocalLossModel(_functional(), num_modules=2), _LOGITS),
    "zeroth_order": lambda: (keras_local.ZerothOrderModel(_functional(), seed=0), _LOGITS),
}


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_every_rule_runs_under_mixed_float16(mixed_float16, name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 20)).astype("float32") * 4
    y = rng.integers(0, 4, 64)
    model, loss = _MODELS[name]()
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    assert np.isfinite(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    scores = model.predict(x, verbose=0)
    assert scores.shape == (64, 4)
    assert np.all(np.isfinite(np.asarray(scores, "float32")))


def test_forward_gnn_runs_under_mixed_float16(mixed_float16):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 6)).astype("float32") * 4
    edges = rng.integers(0, 30, (2, 80)).astype("int32")
    x, y, w = graph_batch(features, edges, rng.integers(0, 3, 30), mask=np.arange(20))
    for rule in ("ff_la", "sf_topdown"):
        model = keras_local.ForwardGNNModel(3, rule=rule, num_layers=2, units=8, seed=0)
        model.compile(optimizer="adam")
        history = model.fit(x, y, sample_weight=w, batch_size=1, epochs=1, verbose=0)
        assert all(np.isfinite(v[-1]) for v in history.history.values())
        scores = model.predict(x, batch_size=1, verbose=0)
        assert scores.dtype == np.float32 and np.all(np.isfinite(scores))
