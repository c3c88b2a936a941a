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


_TF_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from tests.small_models import BLOCK_RULES, rule_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)

    def model():
        m, loss = rule_model(rule)
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
        m.build((None, 6))
        return m

    out = {}
    for rule in BLOCK_RULES + ("zeroth_order",):
        plain = model()
        plain.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
            one = model()
        one.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
            two = model()
        errors = []
        for run in (lambda: two.fit(x, y, batch_size=16, epochs=1, verbose=0),
                    lambda: two.evaluate(x, y, verbose=0)):
            try:
                run()
                errors.append(None)
            except ValueError as e:
                errors.append(str(e))
        out[rule] = {
            "one_replica_difference": max(
                float(np.abs(a - b).max()) for a, b in zip(plain.get_weights(), one.get_weights())
            ),
            "two_replica_errors": errors,
        }
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="tf.distribute exists on the TensorFlow backend only"
)
def test_tf_distribute_one_replica_trains_and_several_are_refused():
    for rule, r in _run(_TF_SCRIPT).items():
        # One replica: the same training as without a strategy.
        assert r["one_replica_difference"] < 1e-6, (rule, r)
        # Two: fit and evaluate refuse, saying what was received.
        for error in r["two_replica_errors"]:
            assert error and "Received: MirroredStrategy with 2 replicas" in error, (rule, r)
