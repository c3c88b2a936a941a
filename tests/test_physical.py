"""BlackBox, host_call and PhysicalForwardForwardModel."""

import os
import runpy

import keras
import numpy as np
import pytest
from keras import ops

from keras_local import backend
from keras_local.layers.black_box import BlackBox
from keras_local.layers.simulated_physical_system import SimulatedPhysicalSystem
from keras_local.models.physical_forward_forward_model import PhysicalForwardForwardModel
from tests.conftest import BACKEND
from tests.conftest import require_data
from tests.conftest import run_python

GUIDES = os.path.join(os.path.dirname(__file__), "..", "guides")


def _raises_when_differentiated():
    @keras.ops.custom_gradient
    def f(x):
        def grad(*args, upstream=None):
            raise RuntimeError("this black box was differentiated")

        return ops.tanh(x), grad

    return f


def test_host_call_returns_numpy_result(rng):
    x = rng.normal(size=(3, 4)).astype("float32")
    out = backend.host_call(lambda a: np.asarray(a) * 2.0, [x], ((3, 4), "float32"))
    np.testing.assert_allclose(ops.convert_to_numpy(out), 2 * x)


def test_simulated_system_matches_twin_and_drifts(rng):
    x = rng.uniform(size=(4, 6)).astype("float32")
    system = SimulatedPhysicalSystem(6, 5, noise=0.0, drift=0.0, seed=3)
    twin = system.digital_twin()
    np.testing.assert_allclose(system(x), ops.convert_to_numpy(twin(x)), rtol=1e-4, atol=1e-6)
    drifting = SimulatedPhysicalSystem(6, 5, noise=0.0, drift=0.5, seed=3)
    first, second = drifting(x), drifting(x)
    assert not np.allclose(first, second)
    noisy = SimulatedPhysicalSystem(6, 5, noise=0.1, seed=3)
    assert not np.allclose(noisy(x), noisy(x))


def test_black_box_shape_change_raises(rng):
    calls = {"n": 0}

    def unstable(a):
        calls["n"] += 1
        return np.zeros((len(a), 3 if calls["n"] < 3 else 4), "float32")

    box = BlackBox(unstable)
    x = np.zeros((2, 5), "float32")
    box(x)  # build probe (call 1) and first call (call 2)
    with pytest.raises(ValueError, match="changed its output shape"):
        box(x)


def _model(function, units=16, **kwargs):
    return PhysicalForwardForwardModel(
        [BlackBox(function)], [keras.layers.Dense(units, activation="relu")],
        num_classes=3, seed=0, label_scale=5.0, **kwargs,
    )


def _toy(rng, n=150):
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 6)).astype("float32") * 0.1
    x[np.arange(n), y] += 0.5  # a phase shift of pi / 2
    return x, y


@pytest.mark.parametrize("kind", ["numpy", "raises_when_differentiated"])
def test_black_box_trains_forward_only(rng, kind):
    x, y = _toy(rng)
    if kind == "numpy":
        function = SimulatedPhysicalSystem(6, 24, noise=0.01, seed=1)
    else:
        function = _raises_when_differentiated()
    model = _model(function)
    # JAX: the step is jitted (host callback); TF: jit_compile is forced off
    # for NumPy boxes (tf.numpy_function cannot be XLA-compiled).
    model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"], jit_compile=True)
    if BACKEND == "tensorflow" and kind == "numpy":
        assert model.jit_compile is False
    history = model.fit(x, y, batch_size=30, epochs=20, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    _, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy > 0.6


def test_save_load(tmp_path, rng):
    x, y = _toy(rng)
    model = _model(SimulatedPhysicalSystem(6, 24, noise=0.0, seed=1))
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, batch_size=20, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    assert np.isfinite(loaded.fit(x, y, batch_size=20, epochs=1, verbose=0).history["loss"][0])


def test_bad_input():
    with pytest.raises(ValueError, match="one layer per black box"):
        PhysicalForwardForwardModel([lambda a: a], [], 3)
    with pytest.raises(TypeError, match="callable"):
        BlackBox(3)
    model = _model(SimulatedPhysicalSystem(6, 8))
    with pytest.raises(ValueError, match="Flatten"):
        model.predict(np.zeros((2, 2, 3), "float32"))


def test_real_mnist_learns():
    require_data("mnist.npz")
    from keras_local.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    x = x[:3000].reshape(-1, 784).astype("float32") / 255.0
    xt = xt[:300].reshape(-1, 784).astype("float32") / 255.0
    system = SimulatedPhysicalSystem(784, 200, noise=0.02, drift=1e-3, seed=0)
    model = PhysicalForwardForwardModel(
        [BlackBox(system)], [keras.layers.Dense(128, activation="relu")], 10,
        label_scale=5.0, seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x, y[:3000], batch_size=100, epochs=4, verbose=0)
    _, accuracy = model.evaluate(xt, yt[:300], verbose=0)
    assert accuracy > 0.3  # chance is 0.1


def test_guide_runs_shrunk(monkeypatch):
    require_data("mnist.npz")
    monkeypatch.setenv("KERAS_LOCAL_SHRINK", "1")
    runpy.run_path(os.path.join(GUIDES, "physical_networks.py"), run_name="__main__")


def test_layer_normalization_centres_then_rms(rng):
    from keras_local.rules import forward_forward as ff

    h = rng.normal(size=(4, 7)).astype("float32") + 3.0
    centred = h - h.mean(axis=1, keepdims=True)
    expected = centred / (np.sqrt(np.mean(centred**2, axis=1, keepdims=True)) + 1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(ff.normalize_length(h, "layer")), expected, rtol=1e-5, atol=1e-6)


def test_measurement_normalization_is_applied_to_the_box_output(rng):
    x = rng.uniform(size=(3, 6)).astype("float32")
    system = SimulatedPhysicalSystem(6, 8, noise=0.0, seed=2)
    model = _model(system, measurement_normalization="layer")
    model.build((None, 6))
    measured = system(x)
    centred = measured - measured.mean(axis=1, keepdims=True)
    centred /= np.sqrt(np.mean(centred**2, axis=1, keepdims=True)) + 1e-4
    labels = np.array([0, 2, 1])
    expected = np.concatenate([centred, 5.0 * np.eye(3)[labels]], axis=1)
    got = ops.convert_to_numpy(model._digital_input(ops.convert_to_tensor(measured), ops.convert_to_tensor(labels)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_softmax_readout_trains_and_round_trips(tmp_path, rng):
    x, y = _toy(rng)
    model = _model(SimulatedPhysicalSystem(6, 24, noise=0.0, seed=1),
                   measurement_normalization="layer", readout="softmax")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    history = model.fit(x, y, batch_size=30, epochs=10, verbose=0)
    assert "readout_loss" in history.history
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.evaluate(x, y, verbose=0)[1] > 0.6
    path = str(tmp_path / "readout.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.readout == "softmax" and loaded.measurement_normalization == "layer"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), probabilities, rtol=1e-4, atol=1e-6)


def test_bad_normalization_and_readout():
    with pytest.raises(ValueError, match="Received: measurement_normalization='batch'"):
        _model(lambda a: a, measurement_normalization="batch")
    with pytest.raises(ValueError, match="Received: readout='linear'"):
        _model(lambda a: a, readout="linear")


def test_physical_benchmark_runs_tiny(tmp_path):
    """The benchmark's three physical rows run, all with the cosine schedule
    floored at the requested fraction, and write their records."""
    require_data("mnist.npz")
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "forward_forward_family.py")
    main = runpy.run_path(path)["main"]
    out = str(tmp_path / "phys.json")
    recorder = main([
        "--experiment", "physical", "--train", "300", "--test", "100", "--epochs", "1",
        "--physical-width", "64", "--physical-units", "32", "--physical-cosine-floor", "0.25",
        "--out", out,
    ])
    rules = [r["rule"] for r in recorder.runs]
    assert len(rules) == 3 and rules[-1] == "backprop through the digital twin"
    assert all(r["cosine_floor"] == 0.25 for r in recorder.runs)
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in recorder.runs)
    assert os.path.exists(out)


def test_global_clipnorm_clips_the_layer_and_the_readout_separately(rng):
    # Each digital layer and the read-out learn from their own losses, so
    # `global_clipnorm` clips them one by one (tests/test_gradient_clipping).
    x, y = _toy(rng, n=30)
    system = SimulatedPhysicalSystem(6, 24, noise=0.0, seed=1)
    model = _model(system, readout="softmax")
    model.build((None, 6))
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    grads = model.local_grads(tv, ntv, ops.convert_to_tensor(x), ops.convert_to_tensor(y), None)[0]
    grads = [ops.convert_to_numpy(g) for g in grads]
    parts = [model.digital_layers[0], model.readout_layer]
    norms = [np.sqrt(sum(np.sum(grads[i] ** 2) for i in model.variable_indices(p))) for p in parts]
    assert min(norms) > 0
    clipnorm = 0.5 * min(norms)
    model.compile(optimizer=keras.optimizers.SGD(0.1, global_clipnorm=clipnorm))
    clipped = model._clip_gradient_groups([ops.convert_to_tensor(g) for g in grads])
    for part, norm in zip(parts, norms):
        for i in model.variable_indices(part):
            np.testing.assert_allclose(ops.convert_to_numpy(clipped[i]), grads[i] * clipnorm / norm, rtol=1e-4, atol=1e-7)


def test_l2_regularizer_adds_its_exact_gradient_to_the_digital_layer(rng):
    # As in every block rule (tests/test_regularization.py): one SGD step
    # moves a regularised kernel by exactly -lr * 2 * lambda * w more.
    x, y = _toy(rng, n=30)
    lr, lam = 0.1, 0.3
    updates = []
    for regularizer in (None, keras.regularizers.L2(lam)):
        keras.utils.set_random_seed(0)
        model = PhysicalForwardForwardModel(
            [BlackBox(SimulatedPhysicalSystem(6, 24, noise=0.0, seed=1))],
            [keras.layers.Dense(16, activation="relu", kernel_regularizer=regularizer)],
            num_classes=3, seed=0, label_scale=5.0, readout="softmax",
        )
        model.compile(optimizer=keras.optimizers.SGD(lr))
        model.build((None, 6))
        before = [ops.convert_to_numpy(v) for v in model.trainable_variables]
        model.train_on_batch(x, y)
        updates.append([ops.convert_to_numpy(v) - b for v, b in zip(model.trainable_variables, before)])
    kernel = model.digital_layers[0].kernel
    for variable, w, plain, regularized in zip(model.trainable_variables, before, *updates):
        extra = -lr * 2 * lam * w if variable is kernel else 0.0
        np.testing.assert_allclose(regularized - plain, extra, rtol=1e-4, atol=1e-6, err_msg=variable.path)


@pytest.mark.skipif(BACKEND != "jax", reason="only JAX's host callback (jax.pure_callback) can hang on one core")
def test_jax_host_call_warns_on_a_single_core(monkeypatch):
    import warnings

    from keras_local.backend.jax import host_call as jax_host_call

    def call():
        out = jax_host_call.host_call(np.tanh, [ops.ones((2, 3))], ((2, 3), "float32"))
        np.testing.assert_allclose(ops.convert_to_numpy(out), np.tanh(np.ones((2, 3))), rtol=1e-6)

    monkeypatch.setattr(jax_host_call, "_warned_single_core", False)
    monkeypatch.setattr(jax_host_call, "_callback_thread_reserved", False)
    monkeypatch.delenv("NPROC", raising=False)
    monkeypatch.setattr(jax_host_call.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call()  # two cores: no warning
    monkeypatch.setattr(jax_host_call.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    with pytest.warns(RuntimeWarning, match="Received: a process limited to 1 CPU core"):
        call()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call()  # once per process


_ONE_CORE_SCRIPT = """
import os, sys, warnings
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.environ.pop("NPROC", None)
start_jax_first = sys.argv[1] == "jax-first"
import numpy as np
import jax
if start_jax_first:
    jax.devices()
import keras_local
from keras_local.backend.jax import host_call as h
print("reserved", h._callback_thread_reserved, "NPROC" in os.environ)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    f = jax.jit(lambda x: h.host_call(np.tanh, [x], ((2, 3), "float32")) + 1.0)
    out = np.asarray(f(np.ones((2, 3), "float32")))
np.testing.assert_allclose(out, np.tanh(np.ones((2, 3))) + 1.0, rtol=1e-6)
print("warned", any("1 CPU core" in str(w.message) for w in caught))
"""


@pytest.mark.skipif(BACKEND != "jax", reason="only JAX's host callback (jax.pure_callback) can hang on one core")
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
@pytest.mark.parametrize("order", ["keras-local-first", "jax-first"])
def test_jax_starts_with_two_callback_threads_on_one_core(order):
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}
    env["KERAS_BACKEND"] = "jax"
    stdout = run_python(_ONE_CORE_SCRIPT, order, env=env, timeout=300)
    lines = [line for line in stdout.splitlines() if line.startswith(("reserved", "warned"))]
    if order == "keras-local-first":
        # Reserved before JAX started, the variable removed again, no warning.
        assert lines == ["reserved True False", "warned False"], stdout
    else:
        # JAX started with one worker thread: too late, so the call warns.
        assert lines == ["reserved False False", "warned True"], stdout
