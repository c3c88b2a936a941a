"""
Title: Supervised local learning with auxiliary networks
Author: keras_local contributors
Date created: 2026/11/27
Last modified: 2026/11/27
Description: Split a Keras ResNet into modules and train each with its own auxiliary network: DGL, InfoPro, AugLocal and MAN.
"""

"""
## Introduction

Backpropagation sends one error signal from the loss back through the whole
network, so every activation must stay in memory until the backward pass
reaches it. *Supervised local learning* cuts the network into K modules and
gives each module but the last a small **auxiliary network** that turns the
module's output into a prediction. Each module learns from its own loss; no
gradient crosses a module boundary. The training step goes module by module
(forward one module, take its local gradient, drop its activations, go on),
so only one module's activations are alive at a time.

`LocalLossModel` does this for any Keras model with the auxiliary networks
of four papers:

- `"dgl"`: a small classifier: a 3x3 convolution (strided on large maps),
  global pooling and a dense layer (after Belilovsky et al.).
- `"infopro"`: a strided-conv classifier plus a decoder that reconstructs
  the input (Wang et al.), so modules keep information about the input.
- `"auglocal"`: fresh copies of a uniform selection of the *later* layers
  (here residual blocks) and of the network's head, shallower for later
  modules at the rate `pyramid_coefficient` sets (Ma et al.).
- `"man"`: the next residual block twice, outputs summed: a momentum (EMA)
  copy that follows its weights, and a trainable copy, the "learnable
  bias"; then the DGL classifier (Su et al.), or InfoPro's classifier and
  decoder with `man_head="infopro"` (the MAN paper's InfoPro+MAN).

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
## Data

`load_cifar10` reads the offline copy from `$KERAS_LOCAL_DATA_DIR`.
"""

n_train, n_test, epochs = (256, 128, 1) if SHRINK else (10000, 2000, 5)
(x_train, y_train), (x_test, y_test) = load_cifar10(
    max_train=n_train, max_test=n_test
)
x_train = x_train.astype("float32") / 255.0
x_test = x_test.astype("float32") / 255.0

"""
## Your network, split into modules

Any Functional or Sequential model works. Here is a CIFAR ResNet built from
Keras layers. A module boundary must be crossed by a single tensor, so the
legal cuts are between residual blocks (and between the layers of the stem
and the head), never inside a block: `split_points_of` lists them.
"""

widths = (8, 16, 32) if SHRINK else (16, 32, 64)
net = resnet((32, 32, 3), 10, blocks_per_stage=1, widths=widths)
print(LocalLossModel.split_points_of(net))

"""
`num_modules=K` picks K-1 of them so the modules hold similar numbers of
weighted layers; `cuts=[...]` picks them by name. The composed modules are
the network itself: they share its layers.
"""

"""
## Training with each auxiliary network

The last module is trained by the compiled loss; the others by the same
loss applied to their auxiliary network's prediction. Training logs one
loss per module.
"""

results = {}
for auxiliary in ["dgl", "infopro", "auglocal", "man"]:
    model = LocalLossModel(
        resnet((32, 32, 3), 10, blocks_per_stage=1, widths=widths),
        num_modules=3,
        auxiliary=auxiliary,
        seed=0,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        x_train, y_train, batch_size=64, epochs=epochs, verbose=0
    )
    print(auxiliary, {k: round(v[-1], 3) for k, v in history.history.items()})
    results[auxiliary] = model.evaluate(x_test, y_test, verbose=0)[1]

print("test accuracy:", results)

"""
## InfoPro as its reference code trains it

By default InfoPro's decoder is scored by the squared error against the
input, with one pair of weights for every module. The reference code does
two things differently, both available: the decoder's output goes through a
sigmoid and is scored by binary cross-entropy against the image in [0, 1]
(`infopro_reconstruction="binary_crossentropy"`; if your inputs are
standardised, pass `infopro_input_mean`/`infopro_input_std` and the decoder
reconstructs `x * std + mean`), and the weights of the two terms move
linearly from the first module to the last one
(`infopro_lambdas=((l1_first, l2_first), (l1_last, l2_last))`: early
modules keep more of the input, later ones focus on the labels). Our images
are already in [0, 1], so no statistics are needed here.
"""

model = LocalLossModel(
    resnet((32, 32, 3), 10, blocks_per_stage=1, widths=widths),
    num_modules=3,
    auxiliary="infopro",
    infopro_reconstruction="binary_crossentropy",
    infopro_lambdas=((5.0, 0.5), (0.5, 1.0)),
    seed=0,
)
model.compile(
    optimizer=keras.optimizers.Adam(2e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)
print("InfoPro (reference recipe):", model.evaluate(x_test, y_test, verbose=0)[1])
print("lambdas of modules 0 and 1:", model.module_infopro_lambdas(0),
      model.module_infopro_lambdas(1))

"""
## Using the trained network

`predict` and `evaluate` run the network alone. `inference_model()` returns
it as a plain `keras.Model`, with the trained weights and without any
auxiliary parts, to save or deploy like any other Keras model.
"""

plain = model.inference_model()
print(type(plain).__name__, plain.count_params(), "parameters")

"""
## Conclusion

`LocalLossModel` turns any single-input Keras model into K locally trained
modules. DGL is the cheapest auxiliary network; InfoPro adds a
reconstruction term; AugLocal and MAN make the auxiliary network look like
the rest of the network, which is what closes most of the gap to
backpropagation in their papers. AugLocal's and MAN's auxiliary networks
are copies of later blocks, so a module and its auxiliary network together
hold two or more blocks' activations; `remat=True` runs each module once
more for its backward pass instead, so the two are never held together
(the trade gradient checkpointing makes; gradients are unchanged). See
`benchmarks/local_learning.py` for the memory and accuracy comparison.
"""
