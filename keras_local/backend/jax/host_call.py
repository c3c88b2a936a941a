"""Calling a Python/NumPy function from a traced JAX computation."""

import jax
import numpy as np


def host_call(fn, inputs, output_spec):
    """`fn(*numpy_inputs) -> numpy` called on the host, also under `jax.jit`.

    Uses `jax.pure_callback` (the call happens once per executed step; XLA
    may not cache it away because the inputs change every step). Nothing is
    differentiated through it: the inputs are detached first.
    `output_spec` is `(shape, dtype)` with a concrete shape.
    """
    shape, dtype = output_spec
    inputs = [jax.lax.stop_gradient(i) for i in inputs]

    def callback(*args):
        return np.asarray(fn(*[np.asarray(a) for a in args]), dtype=dtype)

    return jax.pure_callback(
        callback, jax.ShapeDtypeStruct(tuple(shape), dtype), *inputs,
        vmap_method="sequential",
    )
