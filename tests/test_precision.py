"""Every rule under a half-precision dtype policy (`mixed_float16`): local
losses and the sums of squares they read stay in float32, and every model
trains, evaluates and predicts with finite numbers on every backend. Under
float64 (`keras.config.set_floatx("float64")`) every rule trains and
predicts in float64, and no loss passes through float32 on its way to a
gradient. A single float64 block inside a float32 model trains too."""

import keras
import numpy as np
import pytest
from keras import ops
from keras.src.backend.common import global_state

import keras_local
from keras_local.datasets.graph_inputs import graph_batch
from keras_local.datasets.graph_inputs import link_batch
from keras_local.rules import forward_forward as ff
from keras_local.rules import single_forward as sf
from keras_local.rules import target_projection as tp
from keras_local.rules.precision import full_precision
from keras_local.rules.precision import loss_dtype
from tests.conftest import BACKEND
from tests.conftest import to_numpy
from tests.test_checkpointed_backprop_model import residual_net


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    yield
    keras.mixed_precision.set_dtype_policy(previous)


@pytest.fixture(params=["set_floatx", "set_dtype_policy"])
def float64(request):
    """Keras computing in float64, either way Keras offers. Keras pins its
    global dtype policy at the first layer built, so (as at the start of a
    program) `set_floatx` is called with no policy pinned yet."""
    previous = keras.config.floatx(), global_state.get_global_attribute("dtype_policy")
    if BACKEND == "jax":
        import jax

        x64 = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)  # else JAX keeps float32
    global_state.set_global_attribute("dtype_policy", None)
    getattr(keras.config, request.param)("float64")
    yield
    keras.config.set_floatx(previous[0])
    global_state.set_global_attribute("dtype_policy", previous[1])
    if BACKEND == "jax":
        jax.config.update("jax_enable_x64", x64)


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


def _dense(units, activation="tanh", dtype=None):
    return keras.layers.Dense(units, activation=activation, dtype=dtype)


def _functional(dtype=None):
    inputs = keras.Input((20,))
    h = _dense(16, "relu")(_dense(16, "relu", dtype)(inputs))
    return keras.Model(inputs, keras.layers.Dense(4)(h))


# Each builder takes the dtype of the model's first block (`None`: Keras's
# global policy).
_LOGITS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
_MODELS = {
    "forward_forward": lambda dtype: (keras_local.ForwardForwardModel(
        [_dense(16, "relu", dtype), _dense(16, "relu")], num_classes=4, seed=0), None),
    "single_forward": lambda dtype: (keras_local.SingleForwardModel(
        [_dense(16, "relu", dtype), _dense(16, "relu")], num_classes=4,
        rule="sf_topdown", seed=0), None),
    "drtp": lambda dtype: (keras_local.TargetProjectionModel(
        [_dense(16, dtype=dtype), keras.layers.Dense(4)], num_classes=4, rule="drtp",
        seed=0), _LOGITS),
    "tpsgd_lstm": lambda dtype: (keras_local.TargetProjectionModel(
        [keras.layers.Reshape((4, 5)), keras.layers.LSTM(8, dtype=dtype),
         keras.layers.Dense(4)], num_classes=4, rule="tpsgd", seed=0), _LOGITS),
    "dfa": lambda dtype: (keras_local.DirectFeedbackAlignmentModel(
        [_dense(16, dtype=dtype), keras.layers.Dense(4)], num_classes=4, seed=0), _LOGITS),
    "local_loss": lambda dtype: (keras_local.LocalLossModel(
        _functional(dtype), num_modules=2), _LOGITS),
    "zeroth_order": lambda dtype: (keras_local.ZerothOrderModel(
        _functional(dtype), seed=0), _LOGITS),
}


def _fit_evaluate_predict(name, input_dtype, score_dtype, first_dtype=None):
    """Trains, evaluates and predicts with model `name` of `_MODELS` (its
    first block of `first_dtype`) on inputs of `input_dtype`; every number
    finite, scores of `score_dtype` (unchecked if `None`). Returns the model
    and its trainable weights before training."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 20)).astype(input_dtype) * 4
    y = rng.integers(0, 4, 64)
    model, loss = _MODELS[name](first_dtype)
    model.build((None, 20))
    initial = [to_numpy(v) for v in model.trainable_variables]
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    assert np.isfinite(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    scores = model.predict(x, verbose=0)
    assert scores.shape == (64, 4) and np.all(np.isfinite(scores))
    if score_dtype is not None:
        assert scores.dtype == score_dtype
    return model, initial


def _fit_forward_gnn(input_dtype, score_dtype):
    """ForwardGNN's two node rules and a link rule on node features of
    `input_dtype`: fit finite, scores of `score_dtype`."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 6)).astype(input_dtype) * 4
    edges = rng.integers(0, 30, (2, 80)).astype("int32")
    x, y, w = graph_batch(features, edges, rng.integers(0, 3, 30), mask=np.arange(20))
    links, _ = link_batch(features, edges, edges[:, :10])
    runs = [(keras_local.ForwardGNNModel(3, rule=rule, num_layers=2, units=8, seed=0),
             x, y, w) for rule in ("ff_la", "sf_topdown")]
    runs.append((keras_local.ForwardGNNLinkModel(rule="ff", num_layers=2, units=8, seed=0),
                 links, np.ones((1, 10), input_dtype), None))
    for model, x, y, w in runs:
        model.compile(optimizer="adam")
        history = model.fit(x, y, sample_weight=w, batch_size=1, epochs=1, verbose=0)
        assert all(np.isfinite(v[-1]) for v in history.history.values())
        scores = model.predict(x, batch_size=1, verbose=0)
        assert scores.dtype == score_dtype and np.all(np.isfinite(scores))


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_every_rule_runs_under_mixed_float16(mixed_float16, name):
    # Scores are float32 for the goodness/similarity rules, float16 logits
    # for the others.
    _fit_evaluate_predict(name, "float32", None)


def test_forward_gnn_runs_under_mixed_float16(mixed_float16):
    _fit_forward_gnn("float32", np.float32)


# ---------------------------------------------------------------------- #
# float64
# ---------------------------------------------------------------------- #
def test_loss_dtype_follows_keras_precision(float64):
    assert loss_dtype() == "float64"
    keras.config.set_floatx("float32")
    for policy, want in (("float32", "float32"), ("mixed_float16", "float32"),
                         ("mixed_bfloat16", "float32"), ("float64", "float64")):
        keras.config.set_dtype_policy(policy)
        assert loss_dtype() == want, policy


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_every_rule_runs_in_float64(float64, name):
    model, _ = _fit_evaluate_predict(name, "float64", np.float64)
    assert {keras.backend.standardize_dtype(v.dtype)
            for v in model.trainable_variables} == {"float64"}


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_a_float64_block_in_a_float32_model_trains(name):
    """A block built with `dtype="float64"` (as for one numerically delicate
    layer) trains alongside float32 blocks: its local loss meets the float32
    sums without a dtype clash, and its float64 weights move."""
    model, initial = _fit_evaluate_predict(name, "float32", None, first_dtype="float64")
    dtypes = [keras.backend.standardize_dtype(v.dtype) for v in model.trainable_variables]
    assert set(dtypes) == {"float32", "float64"}, dtypes
    for v, dtype, before in zip(model.trainable_variables, dtypes, initial):
        if dtype == "float64" and "kernel" in v.path:
            assert not np.allclose(to_numpy(v), before), v.path


def test_forward_gnn_runs_in_float64(float64):
    _fit_forward_gnn("float64", np.float64)


def test_physical_forward_forward_runs_in_float64(float64):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6)), rng.integers(0, 3, 40)
    system = keras_local.layers.BlackBox(
        keras_local.layers.SimulatedPhysicalSystem(6, 8, noise=0.0, seed=1)
    )
    model = keras_local.PhysicalForwardForwardModel(
        [system], [keras.layers.Dense(16, activation="relu")], num_classes=3, seed=0
    )
    model.compile(optimizer="adam")
    history = model.fit(x, y, epochs=1, batch_size=20, verbose=0)
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    scores = model.predict(x, verbose=0)
    assert scores.dtype == np.float64 and np.all(np.isfinite(scores))
    assert {keras.backend.standardize_dtype(v.dtype)
            for v in model.trainable_variables} == {"float64"}


def test_checkpointed_backprop_gradients_are_float64(float64):
    # Recomputed forward passes and vector-Jacobian products in float64 give
    # backprop's gradients to float64 precision (not float32's).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 3))
    y = rng.integers(0, 5, 16)
    net = residual_net()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = keras_local.CheckpointedBackpropModel(net, num_modules=3)
    model.compile(optimizer="sgd", loss=loss)
    model.build(x.shape)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    grads = model.local_grads(tv, ntv, x, y, None)[0]
    net_ntv = [v.value for v in net.non_trainable_variables]

    def full_loss(params):
        out, _, losses = net.stateless_call(
            params, net_ntv, x, training=True, return_losses=True
        )
        # (Keras's losses compute in floatx, float32 under a float64 policy.)
        return ops.cast(loss(y, out), "float64") + sum(losses)

    want = keras_local.backend.value_and_grad(full_loss)(tv)[1]
    for v, got, ref in zip(model.trainable_variables, grads, want):
        assert keras.backend.standardize_dtype(got.dtype) == "float64"
        np.testing.assert_allclose(to_numpy(got), to_numpy(ref), rtol=1e-10,
                                   atol=1e-13, err_msg=v.path)
