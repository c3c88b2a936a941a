"""Autodiff helpers on TensorFlow."""

import keras
import tensorflow as tf


def _to_tensor(x):
    # Accepts tensors, tf.Variables and Keras variables alike.
    return keras.ops.convert_to_tensor(x)


def stop_gradient(structure):
    return tf.nest.map_structure(
        lambda t: tf.stop_gradient(t) if tf.is_tensor(t) else t, structure
    )


def value_and_grad(fn, has_aux=False):
    """`fn(params, *args)` -> `(value, grads)` w.r.t. the list `params`."""

    def wrapped(params, *args, **kwargs):
        params = [_to_tensor(p) for p in params]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            for p in params:
                tape.watch(p)
            out = fn(params, *args, **kwargs)
            value, aux = out if has_aux else (out, None)
        grads = tape.gradient(
            value, params, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        value = tf.stop_gradient(value)
        if has_aux:
            return (value, stop_gradient(aux)), grads
        return value, grads

    return wrapped


def jvp(fn, primals, tangents):
    """`fn(params)` at `primals` and its directional derivative."""
    primals = [_to_tensor(p) for p in primals]
    tangents = [tf.convert_to_tensor(t, dtype=p.dtype) for t, p in zip(tangents, primals)]
    with tf.autodiff.ForwardAccumulator(primals, tangents) as acc:
        out = fn(primals)
    tangent_out = acc.jvp(out, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return stop_gradient(out), tangent_out


def barrier(structure):
    """`structure`, unchanged (TensorFlow has no optimisation barrier)."""
    return structure
