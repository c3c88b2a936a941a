"""
Title: Writing your own local learning rule
Author: keras_local contributors
Date created: 2026/11/27
Last modified: 2026/11/27
Description: Subclass `LocalModel`, write one pure function, and train it with `fit` on JAX, TensorFlow or PyTorch.
"""

"""
## Introduction

Backpropagation sends one error signal from the loss back through every
layer. A *local* learning rule gives each block its own objective instead, so
no gradient crosses a block boundary. `keras_local.LocalModel` lets you write
such a rule once, as a pure function of tensors, and train it with the usual
Keras `fit` on all three backends.

In this guide we write a classic rule, greedy layer-wise supervised learning
(each block is trained through its own small linear classifier, as in
Belilovsky et al., "Decoupled Greedy Learning of CNNs", 2020), in about 40
lines, then train it on MNIST.

## Setup
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # or "tensorflow", "torch"

import keras
from keras import ops

import keras_local
from keras_local import backend

SHRINK = os.environ.get("KERAS_LOCAL_SHRINK") == "1"

"""
## The rule

A rule implements `local_grads(trainable_values, non_trainable_values, x, y,
sample_weight)`. It receives the model's variables as flat lists of tensors
and returns gradients aligned with `self.trainable_variables`. Three helpers
do the bookkeeping: `variable_indices(layer)` finds a layer's slice of the
flat lists, `gather`/`scatter` read and write it, and
`backend.value_and_grad` differentiates a function of a list of tensors on
whichever backend is active.

The loop below goes block by block: forward one block and its head on the
detached input, take the gradient of that block's loss, then hand the
detached output to the next block. Only one block's activations are alive at
a time.
"""


class GreedyLocalModel(keras_local.LocalModel):
    def __init__(self, units, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.units, self.num_classes = list(units), num_classes
        self.blocks = [keras.layers.Dense(u, activation="relu") for u in units]
        self.heads = [keras.layers.Dense(num_classes) for _ in units]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for block, head in zip(self.blocks, self.heads):
            block.build(shape)
            shape = block.compute_output_shape(shape)
            head.build(shape)

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return ops.softmax(self.heads[-1](x))

    def local_log_names(self):
        return [f"block_{i}_loss" for i in range(len(self.blocks))]

    def gradient_groups(self):
        # Block i and its head learn from block i's loss alone.
        return [[block, head] for block, head in zip(self.blocks, self.heads)]

    def local_grads(self, tv, ntv, x, y, sample_weight):
        grads, total, logs, h = list(tv), 0.0, {}, x
        for i, (block, head) in enumerate(zip(self.blocks, self.heads)):
            idx = self.variable_indices(block) + self.variable_indices(head)

            def block_loss(params, inputs, block=block, head=head):
                out, _ = block.stateless_call(params[:2], [], inputs)
                logits, _ = head.stateless_call(params[2:], [], out)
                loss = keras.losses.sparse_categorical_crossentropy(
                    y, logits, from_logits=True
                )
                return ops.mean(loss), (out, ops.softmax(logits))

            (loss, (h, y_pred)), block_grads = backend.value_and_grad(
                block_loss, has_aux=True
            )(self.gather(tv, idx), h)
            grads = self.scatter(grads, idx, block_grads)
            total, logs[f"block_{i}_loss"] = total + loss, loss
        return grads, ntv, total, y_pred, logs

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, num_classes=self.num_classes)
        return config


"""
`y_pred` from the last head feeds the compiled metrics, and `total` is what
the progress bar shows as `loss`. `gradient_groups` names the parts that
learn from separate losses: an optimizer's `global_clipnorm` then clips each
part by its own norm, so no block's step depends on another block's
gradient. The base class adapts this one function to
the JAX trainer (pure, `stateless_apply`) and to the TensorFlow and PyTorch
trainers (stateful `optimizer.apply`), so `fit` works everywhere.

## Train it with `fit`
"""

(x_train, y_train), (x_test, y_test) = keras_local.datasets.load_mnist()
n_train, n_test, epochs = (2000, 500, 1) if SHRINK else (60000, 10000, 3)
x_train = x_train[:n_train].reshape(n_train, -1).astype("float32") / 255
x_test = x_test[:n_test].reshape(n_test, -1).astype("float32") / 255
y_train, y_test = y_train[:n_train], y_test[:n_test]

model = GreedyLocalModel(units=[256, 256], num_classes=10, seed=0)
model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
history = model.fit(
    x_train, y_train, batch_size=64, epochs=epochs,
    validation_data=(x_test, y_test), verbose=2,
)

"""
Each block's loss is logged next to the total. `evaluate` runs `call`, the
network with its last head, and reports the compiled metrics.
"""

print(model.evaluate(x_test, y_test, verbose=0, return_dict=True))

"""
## Conclusion

A local rule is one pure function: the variables in, gradients out. Returning
gradients (or pseudo-gradients, for rules that are not gradient descent)
rather than applying updates keeps the user's optimizer, schedules and
callbacks in charge. The built-in rules, starting with
`keras_local.ForwardForwardModel`, are written exactly this way.
"""
