"""
Title: Zeroth-order fine-tuning with ZerothOrderModel (MeZO)
Author: keras_local contributors
Date created: 2026/11/27
Last modified: 2026/12/01
Description: Train any Keras model from forward passes alone, at inference-level memory.
"""

"""
## Introduction

Zeroth-order (ZO) optimisation estimates a gradient from loss values only.
SPSA perturbs all weights along one random direction `z`, measures the loss
at `w + eps z` and `w - eps z`, and uses `g = (f+ - f-) / (2 eps) z`. MeZO
(Malladi et al., 2023) noticed that `z` never has to be stored: it is
regenerated from a seed for the two forward passes and the update, so
fine-tuning costs about the memory of inference.

`keras_local.ZerothOrderModel` wraps any Keras model and feeds this
estimate to the compiled optimizer: `SGD` gives ZO-SGD (MeZO), `Adam`
ZO-Adam. It also offers the forward gradient (one `jvp`), the ZO-Bench
variants (sign, conservative, block-wise, hybrid, sparse), and trains with
losses and layers that have no gradient at all.
"""

"""
## Setup
"""

import os

import keras
import numpy as np

from keras_local.models.zeroth_order_model import ZerothOrderModel

SHRINK = os.environ.get("KERAS_LOCAL_SHRINK") == "1"
EPOCHS = 2 if SHRINK else 30

rng = np.random.default_rng(0)
x = rng.normal(size=(512, 20)).astype("float32")
true_w = rng.normal(size=(20, 3)).astype("float32")
y = np.argmax(x @ true_w, axis=-1).astype("int32")
x_train, y_train, x_val, y_val = x[:384], y[:384], x[384:], y[384:]

"""
## ZO-SGD (MeZO) on a small classifier

The wrapped model is an ordinary Keras model; compile the wrapper with an
optimizer, a loss and metrics, and call `fit`. Logs include the loss and the
magnitude of the projected gradient `|(f+ - f-) / 2 eps|`.
"""


def make_net():
    return keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(32, activation="relu"),
         keras.layers.Dense(3, name="head")]
    )


model = ZerothOrderModel(make_net(), epsilon=1e-3, num_queries=4, seed=0)
model.compile(
    optimizer=keras.optimizers.SGD(0.05),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
history = model.fit(x_train, y_train, batch_size=32, epochs=EPOCHS,
                    validation_data=(x_val, y_val), verbose=0)
print({k: round(v[-1], 3) for k, v in history.history.items()})

"""
## ZO-Adam, forward gradient and hybrid training

The same wrapper with `Adam` is ZO-Adam; `estimator="forward_gradient"`
replaces the two loss evaluations by one forward-mode product; with
`first_order_layers=["head"]` the head gets its true gradient while the
rest of the network stays zeroth-order (ZO-Bench's hybrid).
"""

for name, kwargs, optimizer in [
    ("zo_adam", {}, keras.optimizers.Adam(1e-2)),
    ("forward_gradient", {"estimator": "forward_gradient"},
     keras.optimizers.Adam(1e-2)),
    ("hybrid", {"first_order_layers": ["head"]}, keras.optimizers.SGD(0.05)),
]:
    model = ZerothOrderModel(make_net(), seed=0, **kwargs)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    h = model.fit(x_train, y_train, batch_size=32, epochs=EPOCHS,
                  validation_data=(x_val, y_val), verbose=0)
    print(name, "val accuracy", round(h.history["val_accuracy"][-1], 3))

"""
## A loss without a gradient

Because the model is never differentiated, the loss may be the 0-1 error
itself.
"""


def zero_one(y_true, y_pred):
    wrong = keras.ops.not_equal(
        keras.ops.argmax(y_pred, axis=-1),
        keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"),
    )
    return keras.ops.mean(keras.ops.cast(wrong, "float32"))


model = ZerothOrderModel(make_net(), epsilon=0.1, num_queries=8, seed=0)
model.compile(optimizer=keras.optimizers.SGD(0.5), loss=zero_one)
h = model.fit(x_train, y_train, batch_size=128, epochs=EPOCHS, verbose=0)
print("0-1 training error", [round(v, 3) for v in h.history["loss"]][-3:])

"""
## Fine-tuning a pretrained transformer

`examples/sst2_mezo_minilm.py` fine-tunes the pretrained MiniLM-L6 (BERT,
22.7M parameters, loaded offline with keras-hub) on SST-2 with ZO-SGD,
ZO-Adam, the forward gradient, hybrid training and first-order baselines at
an equal step budget. With `--top-layers N` only the top `N` transformer
layers (plus pooling and head) are trained: the frozen layers below run
once per sentence and their output is cached
(`keras_local.benchmark.minilm_classifier.split_minilm_classifier`), so a
zeroth-order step costs about `N / 6` of a full forward pass and thousands
of steps fit on a CPU.

The variance of the estimate grows with the number of perturbed weights,
so which weights ZO trains matters more than for backprop. On the whole
classifier, ZO-Adam on the LayerNorm scales and offsets alone (plus the
head, 10.8k weights; `--zo-params norms`) beat the linear probe by 2.3
points on SST-2 dev after 12,000 steps, where the LayerNorm-and-biases
subset (31.9k weights) stopped at 1.7; first-order Adam on the same subset
gains more in 500 steps (`benchmarks/results_zeroth_order.md`).

A model with dropout (BERT has it) is queried in training mode by default:
each step draws one set of masks and uses it for `+eps` and `-eps`, so the
two losses differ only through the weights. MeZO's reference instead
evaluates its losses in inference mode; `query_training=False` does the
same here (no dropout noise in the estimate, BatchNorm on its moving
statistics, which are then not updated), and the example's
`--inference-queries` passes it.

## Conclusion

`ZerothOrderModel` turns any Keras model into a forward-only learner. Under
JAX, ZO-SGD's compiled train step needs the inference memory plus one
layer's perturbed weights (wide `Dense` kernels are perturbed one block of
columns at a time, and nested models such as a keras-hub backbone layer by
layer): 0.08x first-order Adam's step on the pretrained MiniLM (see
`benchmarks/results_zeroth_order.md`). The price is many more steps than
backprop needs.
"""
