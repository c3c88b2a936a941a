"""
Title: The Forward-Forward family: dense, convolutional, single-forward and top-down
Author: keras_local contributors
Date created: 2025/01/01
Last modified: 2025/01/01
Description: Forward-only learning rules on one page: FF with dense and conv blocks, SF without negative data, and top-down SF.
"""

"""
## Introduction

Forward-Forward (Hinton 2022) trains each block with its own loss from two
forward passes (positive and negative data). The single-forward rule (SF,
Park et al. 2024) needs no negative data: each block compares its activity
with one embedding per class. Top-down SF also feeds each block the
previous step's activity of the block above. None backpropagates across
blocks.

## Setup
"""

import os

import keras

from keras_local.datasets import load_mnist
from keras_local.models.forward_forward_model import ForwardForwardModel
from keras_local.models.single_forward_model import SingleForwardModel

SHRINK = os.environ.get("KERAS_LOCAL_SHRINK") == "1"
n_train, n_test, epochs, units = (600, 200, 1, 64) if SHRINK else (60000, 10000, 5, 500)
(x_train, y_train), (x_test, y_test) = load_mnist()
x_train = x_train[:n_train].astype("float32") / 255.0
x_test = x_test[:n_test].astype("float32") / 255.0
y_train, y_test = y_train[:n_train], y_test[:n_test]
flat_train, flat_test = x_train.reshape(-1, 784), x_test.reshape(-1, 784)


def run(model, x, xt):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x, y_train, batch_size=100, epochs=epochs, verbose=0)
    return model.evaluate(xt, y_test, verbose=0)[1]


"""
## Dense Forward-Forward
"""

dense = ForwardForwardModel(
    [keras.layers.Dense(units, activation="relu") for _ in range(2)], num_classes=10, seed=0
)
print("dense FF:", run(dense, flat_train, flat_test))

"""
## Convolutional Forward-Forward

The label is overlaid on the first pixels of the image; goodness and length
normalisation run over all units of a block.
"""

conv = ForwardForwardModel(
    [keras.layers.Conv2D(16, 5, activation="relu"), keras.layers.Conv2D(16, 3, activation="relu")],
    num_classes=10, seed=0,
)
print("conv FF:", run(conv, x_train[..., None], x_test[..., None]))

"""
## Single forward (no negative data)
"""

sf = SingleForwardModel(
    [keras.layers.Dense(units, activation="relu") for _ in range(2)],
    num_classes=10, temperature=0.1, seed=0,
)
print("SF:", run(sf, flat_train, flat_test))

"""
## Top-down single forward
"""

topdown = SingleForwardModel(
    [keras.layers.Dense(units, activation="relu") for _ in range(2)],
    num_classes=10, rule="sf_topdown", temperature=0.1, seed=0,
)
print("top-down SF:", run(topdown, flat_train, flat_test))

"""
## Conclusion

All four train block by block from forward passes. SF drops the negative
pass; top-down SF adds a feedback signal from the block above (the previous
step's activity, detached). Numbers at full size are in
`benchmarks/results_forward_forward_family.md`.
"""
