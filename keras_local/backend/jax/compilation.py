"""Whether the running code is compiled (JAX)."""

import jax


def fuses_elementwise(x):
    """True when `x` is traced (inside `jax.jit`, as in Keras's JAX trainer),
    where XLA fuses a chain of elementwise ops on it into one loop; False for
    a concrete array (eager code, `run_eagerly=True`)."""
    return isinstance(x, jax.core.Tracer)
