"""The backend layer against NumPy references, on the active backend."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_local import backend
from tests.conftest import BACKEND
from tests.conftest import run_python
from tests.small_models import small_model


def _dense(units=3, in_dim=4):
    layer = keras.layers.Dense(units, activation="tanh")
    layer.build((None, in_dim))
    return layer


def _loss_fn(layer):
    def fn(params, x):
        y, _ = layer.stateless_call(params, [], x)
        return ops.sum(ops.square(y))

    return fn


def _numpy_grads(w, b, x):
    y = np.tanh(x @ w + b)
    dz = 2 * y * (1 - y**2)
    return float(np.sum(y**2)), x.T @ dz, dz.sum(0)


def test_value_and_grad_matches_closed_form(rng):
    layer = _dense()
    x = rng.normal(size=(5, 4)).astype("float32")
    w, b = (np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in
            (ops.convert_to_numpy(layer.kernel), ops.convert_to_numpy(layer.bias)))
    value, grads = backend.value_and_grad(_loss_fn(layer))(
        [layer.kernel.value, layer.bias.value], ops.convert_to_tensor(x)
    )
    ref_value, ref_dw, ref_db = _numpy_grads(w, b, x)
    np.testing.assert_allclose(ops.convert_to_numpy(value), ref_value, rtol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(grads[0]), ref_dw, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(grads[1]), ref_db, rtol=1e-4, atol=1e-5)


def test_value_and_grad_matches_finite_differences(rng):
    x = rng.normal(size=(6,)).astype("float64")

    def fn(params):
        (p,) = params
        return ops.sum(ops.sin(p) * ops.square(p))

    _, (g,) = backend.value_and_grad(fn)([ops.convert_to_tensor(x, "float64")])
    eps = 1e-6
    fd = np.array([
        (np.sum(np.sin(x + eps * e) * (x + eps * e) ** 2)
         - np.sum(np.sin(x - eps * e) * (x - eps * e) ** 2)) / (2 * eps)
        for e in np.eye(6)
    ])
    np.testing.assert_allclose(ops.convert_to_numpy(g), fd, rtol=1e-6)


def test_unconnected_gradients_are_zeros_and_aux_is_detached(rng):
    a = ops.convert_to_tensor(rng.normal(size=(3,)).astype("float32"))
    unused = ops.convert_to_tensor(rng.normal(size=(2, 2)).astype("float32"))

    def fn(params):
        return ops.sum(params[0] ** 2), {"double": params[0] * 2}

    (value, aux), grads = backend.value_and_grad(fn, has_aux=True)([a, unused])
    np.testing.assert_array_equal(ops.convert_to_numpy(grads[1]), np.zeros((2, 2)))
    np.testing.assert_allclose(ops.convert_to_numpy(grads[0]), 2 * ops.convert_to_numpy(a), rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(aux["double"]), 2 * ops.convert_to_numpy(a))
    if BACKEND == "torch":
        assert not aux["double"].requires_grad and not value.requires_grad


def test_jvp_equals_grad_dot_tangent_and_finite_differences(rng):
    layer = _dense()
    x = ops.convert_to_tensor(rng.normal(size=(5, 4)).astype("float32"))
    params = [layer.kernel.value, layer.bias.value]
    tangents = [rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(3,)).astype("float32")]
    fn = _loss_fn(layer)
    value, tangent_out = backend.jvp(lambda p: fn(p, x), params, tangents)
    _, grads = backend.value_and_grad(fn)(params, x)
    dot = sum(float(np.sum(ops.convert_to_numpy(g) * t)) for g, t in zip(grads, tangents))
    np.testing.assert_allclose(float(ops.convert_to_numpy(tangent_out)), dot, rtol=1e-4)
    w, b = (ops.convert_to_numpy(p).astype("float64") for p in params)
    t0, t1 = (t.astype("float64") for t in tangents)
    xn = ops.convert_to_numpy(x).astype("float64")
    eps = 1e-4
    f = lambda s: np.sum(np.tanh(xn @ (w + s * t0) + b + s * t1) ** 2)
    np.testing.assert_allclose(float(ops.convert_to_numpy(tangent_out)), (f(eps) - f(-eps)) / (2 * eps), rtol=1e-3)
    np.testing.assert_allclose(float(ops.convert_to_numpy(value)), f(0.0), rtol=1e-5)


def test_seeded_draws_are_regenerated_identically():
    seed = backend.seed_from_int(7)
    a = ops.convert_to_numpy(backend.random_normal((4, 5), seed))
    b = ops.convert_to_numpy(backend.random_normal((4, 5), seed))
    c = ops.convert_to_numpy(backend.random_normal((4, 5), backend.seed_from_int(8)))
    u = ops.convert_to_numpy(backend.random_uniform((1000,), seed))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.05


def test_seeded_draws_inside_a_compiled_function_are_identical():
    # The same draw twice inside one compiled train step, on every backend.
    class TwoDraws(keras.layers.Layer):
        def call(self, seed):
            return backend.random_normal((3,), seed) - backend.random_normal((3,), seed)

    layer = TwoDraws()
    model_in = keras.Input((2,), dtype="int32")
    model = keras.Model(model_in, layer(model_in[0]))
    out = model.predict(np.array([[0, 5]], dtype="int32"), verbose=0)
    np.testing.assert_array_equal(out, np.zeros_like(out))


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_fuses_elementwise_tells_a_compiled_step_from_an_eager_one(run_eagerly):
    # Read inside a real train step: compiled (`jax.jit`, `tf.function`)
    # fuses elementwise chains; eager code, and torch's default trainer, not.
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, x):
            seen.append(bool(backend.fuses_elementwise(x)))
            return x

    model = keras.Sequential([keras.Input((2,)), Probe(), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", run_eagerly=run_eagerly)
    model.train_on_batch(np.ones((2, 2), "float32"), np.ones((2, 1), "float32"))
    assert seen, "the probe layer never ran"
    compiled = not run_eagerly and BACKEND in ("jax", "tensorflow")
    assert seen[-1] is compiled
    # Eager code outside any step.
    assert backend.fuses_elementwise(ops.ones((2,))) is False


def test_seed_tensor_with_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="Received: seed with shape"):
        backend.random_normal((2,), ops.convert_to_tensor([1, 2, 3]))


def test_memory_probe_reports_what_it_measured(rng):
    from keras_local import ForwardForwardModel

    model = ForwardForwardModel([keras.layers.Dense(32, activation="relu")], num_classes=3, seed=0)
    model.compile(optimizer="adam")
    x = rng.random((64, 10)).astype("float32")
    y = rng.integers(0, 3, 64)
    report = backend.train_step_memory(model, x, y)
    assert report.backend == BACKEND
    assert report.description
    if BACKEND == "tensorflow":
        assert not report.available and "not available" in report.description
    else:
        # At least the (64, 32) activations of one positive or negative pass.
        assert report.bytes >= 64 * 32 * 4


def _one_step_update(rule, optimizer, policy="float32"):
    """Weights after one training step minus before, for a small model of
    `rule` compiled with `optimizer` under the dtype `policy`."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16, 6)).astype("float32")
        y = rng.integers(0, 3, size=(16,))
        model, loss = small_model(rule)
        model.compile(optimizer=optimizer, loss=loss)
        model.build((None, 6))
        before = [ops.convert_to_numpy(v) for v in model.trainable_variables]
        model.train_on_batch(x, y)
        after = [ops.convert_to_numpy(v) for v in model.trainable_variables]
        return model, [a - b for a, b in zip(after, before)]
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


@pytest.mark.parametrize("rule", ["local_loss", "zeroth_order", "forward_forward"])
def test_loss_scale_optimizer_gets_gradients_it_can_unscale(rule):
    # `compile` wraps the optimizer in a LossScaleOptimizer under the
    # `mixed_float16` policy; it divides gradients by its scale (2**15 at
    # first). Local rules do not scale their losses, so the step must undo
    # that division: the same update as the bare optimizer, to the bit
    # (the scale is a power of two).
    _, bare = _one_step_update(rule, keras.optimizers.SGD(0.1))
    _, wrapped = _one_step_update(
        rule, keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    )
    assert max(float(np.abs(d).max()) for d in bare) > 1e-4  # it moved
    for b, w in zip(bare, wrapped):
        np.testing.assert_array_equal(w, b)
    # And under the policy itself (float16 compute), the step has the
    # float32 step's size, not 2**-15 of it.
    model, mixed = _one_step_update(rule, keras.optimizers.SGD(0.1), "mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    size = lambda deltas: np.sqrt(sum(float(np.sum(d.astype("float64") ** 2)) for d in deltas))
    assert size(mixed) == pytest.approx(size(bare), rel=0.05)


_IMPORT_SCRIPT = """
import os
import keras

created = []
init = keras.Variable.__init__


def counting_init(self, *args, **kwargs):
    created.append(kwargs.get("name"))
    init(self, *args, **kwargs)


keras.Variable.__init__ = counting_init
import keras_local  # noqa: E402

print("variables", created)
if keras.backend.backend() == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
    import jax

    print("devices", len(jax.devices()))
elif keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 3
    )
    print("devices", len(tf.config.list_logical_devices("CPU")))
"""


def test_import_creates_nothing_on_a_device():
    # A user configures the backend's devices after `import keras_local`
    # (XLA_FLAGS, tf.config); that fails once something has run on one.
    import os

    # NPROC set: the one-core reservation (which starts JAX on purpose,
    # tests/test_physical.py) stays out of the way on any machine.
    env = dict(os.environ, KERAS_BACKEND=BACKEND, NPROC="2")
    stdout = run_python(_IMPORT_SCRIPT, env=env, timeout=300)
    lines = [l for l in stdout.splitlines() if l.startswith(("variables", "devices"))]
    expected = ["variables []"] + ([] if BACKEND == "torch" else ["devices 3"])
    assert lines == expected, stdout
