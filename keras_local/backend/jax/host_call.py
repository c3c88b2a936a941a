"""Calling a Python/NumPy function from a traced JAX computation."""

import os
import warnings

import jax
import numpy as np

_warned_single_core = False
_callback_thread_reserved = False


def _usable_cpu_cores():
    """The CPU cores this process may run on (its affinity, on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _backends_are_initialized():
    try:
        from jax._src import xla_bridge
    except ImportError:  # a JAX without this module: assume they are
        return True
    return xla_bridge.backends_are_initialized()


def _nproc_requested():
    try:
        return int(os.environ.get("NPROC", "0"))
    except ValueError:
        return 0


def reserve_callback_thread():
    """On a one-core process, starts JAX's CPU client with two worker threads.

    `jax.pure_callback` first copies its NumPy arguments onto the CPU
    device, and that copy runs on the CPU client's worker threads. XLA
    sizes that pool from the process's CPU affinity, so on one core its
    single worker is busy running the step that waits for the callback,
    and the step can hang for good with the callback waiting for the copy.
    XLA takes the pool size from the `NPROC` environment variable when it
    is set, so it is set to 2 while the client starts, then removed.
    Measured with JAX 0.10 on one core, the physical-network guide's
    shrunk fit (11-15 s): without this, 8 of 16 runs hung (stopped at 60
    s); with it, 0 of 32.

    Does nothing when the process may use two or more cores, when `NPROC`
    is already set, or when JAX's backends already started (too late; the
    first host call then warns).
    """
    global _callback_thread_reserved
    if (
        _usable_cpu_cores() > 1
        or "NPROC" in os.environ
        or _backends_are_initialized()
    ):
        return
    os.environ["NPROC"] = "2"
    try:
        jax.devices()
    finally:
        del os.environ["NPROC"]
    _callback_thread_reserved = True


def _warn_if_single_core():
    global _warned_single_core
    if (
        _warned_single_core
        or _callback_thread_reserved
        or _nproc_requested() > 1
        or _usable_cpu_cores() > 1
    ):
        return
    _warned_single_core = True
    warnings.warn(
        "A NumPy black box on the JAX backend runs through `jax.pure_callback`, "
        "which can deadlock when JAX's CPU client has one worker thread. "
        "Received: a process limited to 1 CPU core whose JAX backend "
        "started before keras_local was imported. Import keras_local "
        "before anything runs on JAX (it then starts JAX with two worker "
        "threads), or set `NPROC=2` in the environment before JAX starts, "
        "or allow the process two or more cores (e.g. `taskset -c 0,1`); "
        "or use the TensorFlow or PyTorch backend, or write the black box "
        "with `keras.ops` (`mode=\"tensor\"`).",
        RuntimeWarning,
        stacklevel=3,
    )


def host_call(fn, inputs, output_spec):
    """`fn(*numpy_inputs) -> numpy` called on the host, also under `jax.jit`.

    Uses `jax.pure_callback` (the call happens once per executed step; XLA
    may not cache it away because the inputs change every step). Nothing is
    differentiated through it: the inputs are detached first.
    `output_spec` is `(shape, dtype)` with a concrete shape. Warns once when
    the process may use a single CPU core and JAX started with one worker
    thread, where the callback can hang (see `reserve_callback_thread`).
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
