"""Autodiff helpers on JAX."""

import jax


def value_and_grad(fn, has_aux=False):
    """`fn(params, *args)` -> `(value, grads)` w.r.t. the list `params`."""
    return jax.value_and_grad(fn, argnums=0, has_aux=has_aux)


def jvp(fn, primals, tangents):
    """`fn(params)` at `primals` and its directional derivative."""
    primals, tangents = list(primals), list(tangents)
    return jax.jvp(lambda p: fn(p), (primals,), (tangents,))


def stop_gradient(structure):
    return jax.tree_util.tree_map(jax.lax.stop_gradient, structure)
