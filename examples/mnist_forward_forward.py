"""
Title: Forward-Forward on MNIST
Author: keras_local contributors
Date created: 2026/11/27
Last modified: 2026/11/27
Description: Train a 784-500-500 network with Hinton's Forward-Forward algorithm, no backpropagation between layers.
"""

"""
## Introduction

Forward-Forward (Hinton 2022) replaces the backward pass by two forward
passes: one on *positive* data (an image with its true label written into
it) and one on *negative* data (the same image with a wrong label). Every
layer is trained, on its own, to have high *goodness* (mean squared
activity) on positive data and low goodness on negative data. To classify,
the network tries every label and picks the one with the highest total
goodness.

## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras

import keras_local

SHRINK = os.environ.get("KERAS_LOCAL_SHRINK") == "1"

"""
## Data

`load_mnist` reads the offline copy from `$KERAS_LOCAL_DATA_DIR` (or the
Keras cache, or downloads it when online). Forward-Forward's dense blocks
take flat vectors.
"""

(x_train, y_train), (x_test, y_test) = keras_local.datasets.load_mnist()
n_train, n_test, epochs = (3000, 1000, 1) if SHRINK else (60000, 10000, 10)
x_train = x_train[:n_train].reshape(n_train, -1).astype("float32") / 255
x_test = x_test[:n_test].reshape(n_test, -1).astype("float32") / 255
y_train, y_test = y_train[:n_train], y_test[:n_test]

"""
## The model

Each `Dense` block sees the length-normalised output of the block below, so
only the direction of its activity vector passes up: a block cannot simply
copy the goodness of the previous one. Here negatives are the most-confused
wrong labels (`negative_labels="hard"`) and the SymBa loss compares positive
and negative goodness directly.
"""

model = keras_local.ForwardForwardModel(
    blocks=[
        keras.layers.Dense(500, activation="relu"),
        keras.layers.Dense(500, activation="relu"),
    ],
    num_classes=10,
    loss="symba",
    negative_labels="hard",
    label_scale=3.0,
    seed=0,
)
model.compile(optimizer=keras.optimizers.Adam(2e-3), metrics=["accuracy"])

"""
## Training

The logs show, per block, the local loss and the mean goodness of positive
and negative data: the gap between them is what each block learns.
"""

history = model.fit(
    x_train, y_train, batch_size=50, epochs=epochs,
    validation_data=(x_test, y_test), verbose=2,
)

"""
## Evaluation

`predict` returns the goodness of every candidate label; `evaluate` reports
the accuracy of its argmax.
"""

scores = model.predict(x_test[:5], verbose=0)
print("predicted:", scores.argmax(-1), "true:", y_test[:5])
print(model.evaluate(x_test, y_test, verbose=0, return_dict=True))

"""
## Conclusion

No gradient crossed a layer boundary, yet the network classifies MNIST. The
model saves and loads like any Keras model (`model.save("ff.keras")`).
"""
