"""
Title: Training black-box physical layers without backprop
Author: keras_local contributors
Date created: 2025/01/01
Last modified: 2026/11/27
Description: Model-free Forward-Forward training of digital layers between black-box physical systems, with noise and drift.
"""

"""
## Introduction

A physical system (an optical scatterer, a wave chip) can compute a rich
nonlinear transform fast and cheaply, but it cannot be differentiated: we
can only send inputs and measure outputs, with noise, and it drifts.
`PhysicalForwardForwardModel` (after Momeni et al., 2023) trains trainable
*digital* layers placed after black boxes with local Forward-Forward losses
computed from the measurements alone: no model of the system is needed.

## Setup
"""

import os

import keras

from keras_local.datasets import load_mnist
from keras_local.layers.black_box import BlackBox
from keras_local.layers.simulated_physical_system import SimulatedPhysicalSystem
from keras_local.models.physical_forward_forward_model import PhysicalForwardForwardModel

SHRINK = os.environ.get("KERAS_LOCAL_SHRINK") == "1"
n_train, n_val, n_test, epochs = (1000, 200, 200, 1) if SHRINK else (55000, 5000, 10000, 5)

(x_train, y_train), (x_test, y_test) = load_mnist()
x_train = x_train.reshape(-1, 784).astype("float32") / 255.0
x_test = x_test[:n_test].reshape(-1, 784).astype("float32") / 255.0
# The validation images are carved from the end of the training set.
x_val, y_val = x_train[-n_val:], y_train[-n_val:]
x_train, y_train, y_test = x_train[:n_train], y_train[:n_train], y_test[:n_test]

"""
## A simulated physical system

`SimulatedPhysicalSystem` phase-encodes its input, scatters it through a
fixed random complex medium and measures the intensity, with 2% noise and a
slow drift of the medium. It is a NumPy function: `BlackBox` calls it
through a host callback (`jax.pure_callback` under JAX's `jit`;
`tf.numpy_function` on TensorFlow, which cannot be XLA-compiled, so the
model compiles without XLA there).
"""

system = SimulatedPhysicalSystem(784, 400 if SHRINK else 1000, noise=0.02, drift=1e-4, seed=0)
print(system(x_train[:2]).shape)

"""
## Train the digital layer with forward passes only

The digital layer reads each measurement with its per-sample mean removed
(`measurement_normalization="layer"`): intensities share a large offset
that says little about the input; centring it out cut the test error
from 35% to 15% in a short run (10k images, 2 epochs). The label is appended to the digital
layer's input (the box itself never sees it), at the default `label_scale=1.0`: a
larger label lets the layer gate its units on the label, and the activities of the
neutral-label pass, which a local softmax read-out (`readout="softmax"`) turns into
class probabilities, grow less informative with training. The learning rate is
cosine-decayed to a tenth of its start, not to zero, so the digital layer keeps
tracking the drifting medium until the end.
"""


def cosine(rate=1e-3):
    steps = epochs * -(-len(x_train) // 100)
    return keras.optimizers.schedules.CosineDecay(rate, steps, alpha=0.1)


model = PhysicalForwardForwardModel(
    [BlackBox(system)], [keras.layers.Dense(1000, activation="relu")],
    num_classes=10, measurement_normalization="layer", readout="softmax", seed=0,
)
model.compile(optimizer=keras.optimizers.Adam(cosine()), metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=100, epochs=epochs, verbose=2,
          validation_data=(x_val, y_val))
print("physical FF test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

"""
## Backprop through a digital twin

A real lab has no exact differentiable model; here we do, so we can compare
with backprop through the noiseless twin.
"""

twin = keras.Sequential([
    keras.Input((784,)), system.digital_twin(),
    keras.layers.LayerNormalization(center=False, scale=False),
    keras.layers.Dense(1000, activation="relu"), keras.layers.Dense(10),
])
twin.compile(optimizer=keras.optimizers.Adam(cosine()),
             loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
             metrics=["accuracy"])
twin.fit(x_train, y_train, batch_size=100, epochs=epochs, verbose=2,
         validation_data=(x_val, y_val))
print("backprop-through-twin test accuracy:", twin.evaluate(x_test, y_test, verbose=0)[1])

"""
## Conclusion

The digital layers learned from measurements only, while the system was
noisy and drifting. See `benchmarks/results_forward_forward_family.md` for
full-size numbers.
"""
