"""Data-parallel training with `keras.distribution` (JAX: the only backend
Keras's distribution API supports), on two emulated CPU devices; on
TensorFlow, what `tf.distribute` strategies do."""

import json
import os
import textwrap

import pytest

from tests.conftest import BACKEND
from tests.conftest import run_python

_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["KERAS_BACKEND"] = "jax"
    import jax, keras, numpy as np
    from tests.small_models import small_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)

    def weights_after_fit(kind, devices):
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices) if devices else None
        )
        keras.utils.set_random_seed(0)
        model, loss = small_model(kind)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        shardings = {str(v.value.sharding.device_set) for v in model.trainable_variables}
        return [np.asarray(v) for v in model.trainable_variables], len(jax.devices()), shardings

    out = {}
    for kind in ("local_loss", "zeroth_order", "forward_forward"):
        single, _, _ = weights_after_fit(kind, None)
        parallel, n, shardings = weights_after_fit(kind, jax.devices())
        out[kind] = {
            "devices": n,
            "replicated_on_both": all("id=0" in s and "id=1" in s for s in shardings),
            "max_difference": max(float(np.abs(a - b).max()) for a, b in zip(single, parallel)),
        }
    print("RESULT" + json.dumps(out))
    """
)


def _run(script):
    """The `RESULT` dict a script prints, run in a fresh process (device
    settings must precede the backend's start)."""
    stdout = run_python(script, env=dict(os.environ, OMP_NUM_THREADS="1"))
    line = [l for l in stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


@pytest.mark.skipif(
    BACKEND != "jax",
    reason="keras.distribution (DataParallel) is implemented for JAX only",
)
def test_data_parallel_fit_matches_single_device_fit():
    for kind, r in _run(_SCRIPT).items():
        assert r["devices"] == 2 and r["replicated_on_both"], (kind, r)
        # The same updates up to the order of the cross-device sums (SPSA
        # divides loss differences by 2 * epsilon, so its weights differ
        # more).
        tolerance = 1e-4 if kind == "zeroth_order" else 1e-6
        assert r["max_difference"] < tolerance, (kind, r)


# The rules `_TF_SCRIPT` trains with XLA under a one-replica strategy, and
# how far from the no-strategy weights each may end (MeZO's perturbations
# amplify float differences).
_XLA_TOLERANCE = {
    "drtp": 1e-6, "local_loss": 1e-6, "zeroth_order": 1e-4, "auxiliary_dgl": 1e-6,
}

_TF_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    import keras_local
    from keras_local.datasets.graph_inputs import graph_batch
    from tests.small_models import BLOCK_RULES, rule_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ZO_VARIANTS = {"zo_sign": dict(sign=True), "zo_conservative": dict(conservative=True),
                   "zo_forward_gradient": dict(estimator="forward_gradient")}

    # Image data for the auxiliary networks of `LocalLossModel`, and a
    # "paired" copy whose two replica shares of every batch are the same
    # samples: a BatchNorm layer's per-replica statistics are then the
    # whole batch's, so a model with BatchNorm must train as on one device.
    images = rng.normal(size=(64, 8, 8, 3)).astype("float32")

    def paired(a):
        shares = a[:32].reshape((4, 1, 8) + a.shape[1:])
        return np.concatenate([shares, shares], axis=1).reshape(a.shape)

    DATA = {"dense": (x, y), "dense_paired": (paired(x), paired(y)),
            "images": (images, y), "images_paired": (paired(images), paired(y))}

    def conv_net():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((8, 8, 3))] + [
            keras.layers.Conv2D(4, 3, padding="same", activation="relu")
            for _ in range(3)
        ] + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])

    def data(rule):
        kind = "images" if rule.startswith("auxiliary_") else "dense"
        return DATA[kind + "_paired" if rule.endswith("_paired") else kind]

    def batchnorm_net():
        keras.utils.set_random_seed(0)
        return keras.Sequential([
            keras.Input((6,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
            keras.layers.ReLU(), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3),
        ])

    def model(rule, jit_compile="auto"):
        if rule in ZO_VARIANTS:
            keras.utils.set_random_seed(0)
            net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
            m, l = keras_local.ZerothOrderModel(net, seed=0, **ZO_VARIANTS[rule]), loss
        elif rule.startswith("keras_batchnorm"):
            m, l = batchnorm_net(), loss
        elif rule.startswith("auxiliary_"):
            auxiliary = rule.split("_")[1]
            m = keras_local.LocalLossModel(conv_net(), num_modules=3, auxiliary=auxiliary, seed=0)
            l = loss
        elif rule == "checkpointed_batchnorm":
            m, l = keras_local.CheckpointedBackpropModel(batchnorm_net(), num_modules=2), loss
        else:
            m, l = rule_model(rule)
        # ZO-SGD-Cons at a rate where it keeps some steps and rejects others.
        rate = 1.0 if rule == "zo_conservative" else 0.1
        m.compile(optimizer=keras.optimizers.SGD(rate), loss=l, metrics=["accuracy"],
                  jit_compile=jit_compile)
        return m  # not built: `fit` builds it, in the strategy's scope

    def fit(m, xy=(x, y)):
        history = m.fit(*xy, batch_size=16, epochs=1, verbose=0, shuffle=False).history
        return {k: v[-1] for k, v in history.items()}

    def difference(a, b):
        if isinstance(a, dict):
            assert set(a) == set(b), (a, b)
            return max(abs(a[k] - b[k]) for k in a)
        return max(float(np.abs(p - q).max()) for p, q in zip(a, b))

    # One strategy for every model: several two-replica strategies in one
    # process break TF's collectives.
    two_replicas = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out, trained = {}, {}
    for rule in BLOCK_RULES + ("zeroth_order",) + tuple(ZO_VARIANTS) + (
            "keras_batchnorm", "checkpointed_batchnorm", "keras_batchnorm_paired",
            "auxiliary_dgl", "auxiliary_auglocal", "auxiliary_man",
            "auxiliary_infopro", "auxiliary_infopro_paired"):
        xy = data(rule)
        plain = model(rule)
        plain_logs = fit(plain, xy)
        with two_replicas.scope():
            two = model(rule)
        two_logs = fit(two, xy)
        trained[rule] = two.get_weights()
        # The same weights without a strategy: what `evaluate` and
        # `predict` of the two-replica model must give.
        same = model(rule)
        same.build((None,) + xy[0].shape[1:])
        same.set_weights(two.get_weights())
        out[rule] = {
            "step_kept": plain_logs.get("step_kept"),
            "weights": difference(plain.get_weights(), two.get_weights()),
            "fit_logs": difference(plain_logs, two_logs),
            "evaluate_vs_plain": difference(
                plain.evaluate(*xy, verbose=0, return_dict=True),
                two.evaluate(*xy, verbose=0, return_dict=True)),
            "evaluate_vs_same_weights": difference(
                same.evaluate(*xy, verbose=0, return_dict=True),
                two.evaluate(*xy, verbose=0, return_dict=True)),
            "predict_vs_same_weights": float(np.abs(
                same.predict(xy[0], verbose=0) - two.predict(xy[0], verbose=0)).max()),
        }
    # Backprop through Keras's own step and through the checkpointed one,
    # both under the strategy (per-replica BatchNorm statistics alike).
    out["checkpointed_vs_keras_two_replicas"] = difference(
        trained["keras_batchnorm"], trained["checkpointed_batchnorm"])

    # One replica: the same training as without a strategy.
    one_replica = tf.distribute.MirroredStrategy(["/cpu:0"])
    with one_replica.scope():
        one = model("local_loss")
    fit(one)
    plain = model("local_loss")
    fit(plain)
    out["one_replica"] = difference(plain.get_weights(), one.get_weights())
    # XLA, asked for (Keras's "auto" leaves it off under tf.distribute),
    # compiles the replicated step of each kind of rule and trains as
    # without a strategy. On two CPU replicas TF's XLA refuses a plain Keras
    # model too (a variable on another device), so one replica is tested.
    for rule in ("drtp", "local_loss", "zeroth_order", "auxiliary_dgl"):
        xy = data(rule)
        plain = model(rule, jit_compile=True)
        fit(plain, xy)
        with one_replica.scope():
            one = model(rule, jit_compile=True)
        fit(one, xy)
        out["xla_" + rule] = {
            "jit_compile": bool(plain.jit_compile and one.jit_compile),
            "weights": difference(plain.get_weights(), one.get_weights()),
        }

    # A whole graph per batch cannot be split: refused, saying so.
    graph = graph_batch(rng.normal(size=(12, 5)).astype("float32"),
                        rng.integers(0, 12, size=(2, 30)).astype("int32"),
                        rng.integers(0, 3, 12))
    with two_replicas.scope():
        gnn = keras_local.ForwardGNNModel(3, rule="sf", units=4, num_layers=1)
        gnn.compile(optimizer="adam")
    try:
        gnn.fit(graph[0], graph[1], batch_size=1, verbose=0)
        out["graph_error"] = None
    except ValueError as e:
        out["graph_error"] = str(e)
    print("RESULT" + json.dumps(out))
    """
)

# Rules whose step is a mean over samples, like backprop's: under two
# replicas, each replica's share of the batch gives the same update as the
# whole batch on one device. SPSA divides loss differences by 2 * epsilon
# (float32 sums in another order differ by more), as in the JAX test above.
_EXACT = ("single_forward", "drtp", "tpsgd", "direct_feedback_alignment",
          "local_loss", "zo_forward_gradient", "auxiliary_dgl", "auxiliary_auglocal",
          "auxiliary_man", "auxiliary_infopro_paired", "keras_batchnorm_paired")
_SPSA = ("zeroth_order", "zo_sign", "zo_conservative")
_RULES = (
    "forward_forward_softplus", "forward_forward_symba") + _EXACT + _SPSA


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="tf.distribute exists on the TensorFlow backend only"
)
def test_tf_distribute_two_replicas_train_as_one_device():
    r = _run(_TF_SCRIPT)
    for rule in _EXACT + _SPSA:
        tolerance = 1e-4 if rule in _SPSA else 1e-6
        assert r[rule]["weights"] < tolerance, (rule, r[rule])
        # Logged losses (each the whole batch's, not one replica's or a
        # sum over replicas) and metrics, during `fit` and `evaluate`.
        assert r[rule]["fit_logs"] < 10 * tolerance, (rule, r[rule])
        assert r[rule]["evaluate_vs_plain"] < 10 * tolerance, (rule, r[rule])
    # Forward-Forward draws its negative labels per replica: other updates
    # than on one device, but `evaluate` and `predict` are those of the
    # weights, as for every rule.
    for rule in _RULES:
        assert r[rule]["evaluate_vs_same_weights"] < 1e-5, (rule, r[rule])
        assert r[rule]["predict_vs_same_weights"] < 1e-5, (rule, r[rule])
    assert r["forward_forward_softplus"]["weights"] > 1e-4  # the draws do differ
    assert 0 < r["zo_conservative"]["step_kept"] < 1, r["zo_conservative"]
    # BatchNorm normalises each replica's share and keeps per-replica moving
    # statistics, in Keras's own step too: the checkpointed step must match
    # Keras's under the same strategy.
    assert r["checkpointed_vs_keras_two_replicas"] < 1e-6, r
    # InfoPro's decoder has BatchNorm: on data whose replica shares differ
    # it trains as Keras's own BatchNorm step does, per replica (neither
    # matches one device); on paired data both match one device (_EXACT).
    assert r["auxiliary_infopro"]["weights"] > 1e-4, r["auxiliary_infopro"]
    assert r["keras_batchnorm"]["weights"] > 1e-4, r["keras_batchnorm"]
    assert r["one_replica"] < 1e-6, r
    # Every rule the script compiled with XLA, each within its tolerance.
    xla_rules = {k[len("xla_"):]: v for k, v in r.items() if k.startswith("xla_")}
    assert sorted(xla_rules) == sorted(_XLA_TOLERANCE), sorted(xla_rules)
    for rule, xla in xla_rules.items():
        assert xla["jit_compile"] is True, (rule, xla)
        assert xla["weights"] < _XLA_TOLERANCE[rule], (rule, xla)
    assert r["graph_error"] and "Received: a strategy with 2 replicas" in r["graph_error"], r
