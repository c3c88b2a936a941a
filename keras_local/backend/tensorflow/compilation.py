"""Whether the running code is compiled (TensorFlow)."""

import tensorflow as tf


def fuses_elementwise(x):
    """True while tracing a `tf.function` (Grappler or XLA then fuses
    elementwise chains on `x`); False in eager mode (`run_eagerly=True`),
    where every op is its own pass over memory."""
    del x  # the mode, not the tensor, decides
    return not tf.executing_eagerly()
