"""
Title: The Forward-Forward family: dense, convolutional, channel-wise, single-forward and top-down
Author: keras_local contributors
Date created: 2025/01/01
Last modified: 2026/12/01
Description: Forward-only learning rules on one page: FF with dense and conv blocks, channel-wise competitive FF, SF without negative data, and top-down SF.
"""

"""
## Introduction

Forward-Forward (Hinton 2022) trains each block with its own loss from two
forward passes (positive and negative data). The single-forward rule (SF,
Park et al. 2024) needs no negative data: each block compares its activity
with one embedding per class. Channel-wise competitive FF
(Papachristodoulou et al. 2024) needs no negative data either: each class
owns a group of a block's channels, and the groups compete. Top-down SF
also feeds each block the previous step's activity of the block above.
None backpropagates across blocks.

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
## Channel-wise competitive Forward-Forward

With `goodness="channelwise"` the block's channels are split into one group
per class, and each group's goodness (mean squared activity) is that
class's score. The CwC loss is the cross-entropy of the softmax over these
scores, so one forward pass per block gives the positive goodness (the true
class's group) and the negative goodness (the other groups): no label in
the input and no negative data. Since nothing is compared across separate
batches, blocks may hold `BatchNormalization`. Prediction is one pass too.
On CIFAR-10 this is the member of the family that reaches backprop-like
accuracy with convolutional blocks (see the results file).
"""


def channelwise_block(filters):
    return keras.Sequential([
        keras.layers.Conv2D(filters, 3, padding="same"), keras.layers.ReLU(),
        keras.layers.MaxPooling2D(2), keras.layers.BatchNormalization(momentum=0.9),
    ])


channelwise = ForwardForwardModel(
    [channelwise_block(20), channelwise_block(40)], num_classes=10,
    goodness="channelwise", loss="competitive", normalization="none", seed=0,
)
print("channel-wise FF:", run(channelwise, x_train[..., None], x_test[..., None]))

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

All five train block by block from forward passes. Channel-wise FF and SF
drop the negative pass; top-down SF adds a feedback signal from the block above (the previous
step's activity, detached). Numbers at full size are in
`benchmarks/results_forward_forward_family.md`.
"""
