"""Calling a Python/NumPy function from a TensorFlow graph."""

import numpy as np
import tensorflow as tf


def host_call(fn, inputs, output_spec):
    """`fn(*numpy_inputs) -> numpy` called on the host via `tf.numpy_function`.

    Works eagerly and inside `tf.function`, but NOT under XLA
    (`jit_compile=True`): XLA cannot compile the `PyFunc` op and TensorFlow
    fails at the first step. Models holding NumPy black boxes compile with
    `jit_compile=False` on TensorFlow (see `PhysicalForwardForwardModel`).
    `output_spec` is `(shape, dtype)`; a `None` batch axis is allowed.
    """
    shape, dtype = output_spec
    inputs = [tf.stop_gradient(tf.convert_to_tensor(i)) for i in inputs]

    def call(*args):
        return np.asarray(fn(*args), dtype=dtype)

    out = tf.numpy_function(call, inputs, Tout=tf.as_dtype(dtype), stateful=True)
    out.set_shape(shape)
    return tf.stop_gradient(out)
