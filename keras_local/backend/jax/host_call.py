"""Calling a Python/NumPy function from a traced JAX computation."""

import os
import warnings

import jax
import numpy as np

_warned_single_core = False


def _usable_cpu_cores():
    """The CPU cores this process may run on (its affinity, on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _warn_if_single_core():
    # Measured here with JAX 0.10: on one usable core, 9 of 13 short
    # `fit` runs of a physical FF model hung for good, the callback waiting
    # in `np.asarray` on a copy that JAX's one CPU worker, busy running the
    # step, never makes (`jax.pure_callback` puts its NumPy arguments on
    # the device before the callback sees them). With two emulated CPU
    # devices the same runs all finished (10 of 10).
    global _warned_single_core
    if _warned_single_core or _usable_cpu_cores() > 1:
        return
    _warned_single_core = True
    warnings.warn(
        "A NumPy black box on the JAX backend runs through `jax.pure_callback`, "
        "which can deadlock when the process may use only one CPU core. "
        "Received: a process limited to 1 CPU core. Allow it two or more "
        "(e.g. `taskset -c 0,1`); or, before JAX first runs, set "
        "`XLA_FLAGS=--xla_force_host_platform_device_count=2` (two CPU "
        "devices; `jax.devices()` then lists both); or use the TensorFlow "
        "or PyTorch backend, or write the black box with `keras.ops` "
        "(`mode=\"tensor\"`).",
        RuntimeWarning,
        stacklevel=3,
    )


def host_call(fn, inputs, output_spec):
    """`fn(*numpy_inputs) -> numpy` called on the host, also under `jax.jit`.

    Uses `jax.pure_callback` (the call happens once per executed step; XLA
    may not cache it away because the inputs change every step). Nothing is
    differentiated through it: the inputs are detached first.
    `output_spec` is `(shape, dtype)` with a concrete shape. Warns once when
    the process may use a single CPU core, where JAX's callbacks can hang.
    """
    _warn_if_single_core()
    shape, dtype = output_spec
    inputs = [jax.lax.stop_gradient(i) for i in inputs]

    def callback(*args):
        return np.asarray(fn(*[np.asarray(a) for a in args]), dtype=dtype)

    return jax.pure_callback(
        callback, jax.ShapeDtypeStruct(tuple(shape), dtype), *inputs,
        vmap_method="sequential",
    )
