"""
Title: AugLocal on CIFAR-10
Author: keras_local contributors
Date created: 2026/11/27
Last modified: 2026/11/27
Description: Train a ResNet on CIFAR-10 with AugLocal's augmented auxiliary networks, no gradient crossing module boundaries.
"""

"""
## Introduction

AugLocal (Ma et al., ICLR 2024) builds module k's auxiliary network from
freshly initialised copies of a uniform selection of the layers *after*
module k (here residual blocks), topped by a copy of the network's head
(pooling and classifier). Its depth shrinks linearly for later modules, at
a rate set by the pyramid coefficient. The auxiliary network then
resembles the rest of the network, which brings local learning close to
backpropagation.

## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras

from keras_local.benchmark.local_loss_rules import resnet
from keras_local.datasets import load_cifar10
from keras_local.models.local_loss_model import LocalLossModel

SHRINK = os.environ.get("KERAS_LOCAL_SHRINK") == "1"

"""
## Data with augmentation

Random flips and translations are the first layers of the network: they
run in the first module during training and are off at inference.
"""

n_train, n_test, epochs = (256, 128, 1) if SHRINK else (50000, 10000, 30)
(x_train, y_train), (x_test, y_test) = load_cifar10(
    max_train=n_train, max_test=n_test
)
x_train = x_train.astype("float32") / 255.0
x_test = x_test.astype("float32") / 255.0

"""
## The model

A ResNet-8 (shrunk) or ResNet-20, four modules, AugLocal auxiliaries of
up to 3 blocks (the first module's), with AugLocal's pyramid coefficient
0.5.
"""

blocks, widths = (1, (8, 16, 32)) if SHRINK else (3, (16, 32, 64))
net = resnet(
    (32, 32, 3), 10, blocks_per_stage=blocks, widths=widths, augment=True
)
model = LocalLossModel(net, num_modules=4, auxiliary="auglocal",
                       auxiliary_depth=3, pyramid_coefficient=0.5, seed=0)
model.compile(
    optimizer=keras.optimizers.Adam(2e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(x_train, y_train, batch_size=128, epochs=epochs,
          validation_data=(x_test, y_test), verbose=2)

"""
## Evaluation
"""

loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"test accuracy: {accuracy:.3f}")

"""
## Conclusion

Each module was trained only by its own AugLocal auxiliary network (the
last by the model's loss). `model.inference_model()` gives the plain
trained ResNet.
"""
