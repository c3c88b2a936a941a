"""A rule's step is a function of the values it is given, never of the
live variables: in a TensorFlow graph without XLA a live read may run after
`optimizer.apply` has written the weight (the hybrid zeroth-order queries
did, and the update came out wrong some of the time), and a step called
outside a trainer's scope would see whatever the variables hold."""

import keras
import numpy as np
import pytest

import keras_local
from tests.small_models import BLOCK_RULES, rule_model


def _hybrid_zeroth_order():
    # The first-order head runs unperturbed in every zeroth-order query.
    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
        keras.layers.Dense(3, name="head"),
    ])
    model = keras_local.ZerothOrderModel(net, seed=0, first_order_layers=["head"])
    return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _local_loss(auxiliary):
    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(8, activation="relu"), keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(3),
    ])
    model = keras_local.LocalLossModel(net, num_modules=2, auxiliary=auxiliary, seed=0)
    return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True)


AUXILIARIES = ("infopro", "auglocal", "man")


def _physical():
    keras.utils.set_random_seed(0)
    system = keras_local.layers.SimulatedPhysicalSystem(6, 24, noise=0.0, drift=0.0, seed=1)
    model = keras_local.PhysicalForwardForwardModel(
        [keras_local.layers.BlackBox(system)], [keras.layers.Dense(8, activation="relu")],
        num_classes=3, seed=0, readout="softmax",
    )
    return model, None


def _checkpointed_backprop():
    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
        keras.layers.ReLU(), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3),
    ])
    model = keras_local.CheckpointedBackpropModel(net, num_modules=2)
    return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True)


BUILDERS = {
    "zeroth_order_hybrid": _hybrid_zeroth_order,
    "physical_forward_forward": _physical,
    "checkpointed_backprop": _checkpointed_backprop,
    **{name: (lambda name=name: _local_loss(name)) for name in AUXILIARIES},
}


@pytest.mark.parametrize(
    "rule", BLOCK_RULES + ("zeroth_order",) + tuple(BUILDERS)
)
def test_local_grads_reads_the_values_passed_not_the_variables(rule):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 3, 16)

    def model():
        m, loss = BUILDERS[rule]() if rule in BUILDERS else rule_model(rule)
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
        m.build((None, 6))
        return m

    def grads(m, tv):
        ntv = [v.value for v in m.non_trainable_variables]
        g = m.local_grads(tv, ntv, x, y, None)[0]
        return [None if t is None else keras.ops.convert_to_numpy(t) for t in g]

    shifted = model()
    values = [keras.ops.convert_to_numpy(v) * 1.5 + 0.1 for v in shifted.trainable_variables]
    # The same values passed to a model whose variables still hold the
    # originals, and to one whose variables hold them.
    from_values = grads(shifted, [keras.ops.convert_to_tensor(v) for v in values])
    for variable, value in zip(shifted.trainable_variables, values):
        variable.assign(value)
    from_variables = grads(shifted, [v.value for v in shifted.trainable_variables])
    assert any(g is not None for g in from_values)
    for variable, a, b in zip(shifted.trainable_variables, from_values, from_variables):
        if a is None or b is None:
            assert a is None and b is None, variable.path
        else:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=variable.path)
