"""Autodiff helpers on PyTorch."""

import torch
import torch.utils._pytree as pytree


def _leaf(x):
    x = x.value if hasattr(x, "value") else x
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    return x


def stop_gradient(structure):
    return pytree.tree_map(
        lambda t: t.detach() if isinstance(t, torch.Tensor) else t, structure
    )


def value_and_grad(fn, has_aux=False):
    """`fn(params, *args)` -> `(value, grads)` w.r.t. the list `params`.

    Differentiates detached `requires_grad_` copies, so no graph reaches the
    caller's tensors and none leaks out through the values.
    """

    def wrapped(params, *args, **kwargs):
        leaves = [_leaf(p).detach().requires_grad_(p_is_float(p)) for p in params]
        with torch.enable_grad():
            out = fn(leaves, *args, **kwargs)
            value, aux = out if has_aux else (out, None)
            wanted = [p for p in leaves if p.requires_grad]
            if value.requires_grad and wanted:
                found = torch.autograd.grad(value, wanted, allow_unused=True)
            else:
                found = [None] * len(wanted)
        found = iter(found)
        grads = []
        for p in leaves:
            g = next(found) if p.requires_grad else None
            grads.append(torch.zeros_like(p) if g is None else g.detach())
        value = value.detach()
        if has_aux:
            return (value, stop_gradient(aux)), grads
        return value, grads

    return wrapped


def p_is_float(p):
    return torch.is_floating_point(_leaf(p)) or torch.is_complex(_leaf(p))


def jvp(fn, primals, tangents):
    """`fn(params)` at `primals` and its directional derivative."""
    primals = tuple(_leaf(p).detach() for p in primals)
    tangents = tuple(
        torch.as_tensor(t, dtype=p.dtype, device=p.device)
        for t, p in zip(tangents, primals)
    )
    out, tangent_out = torch.func.jvp(lambda *p: fn(list(p)), primals, tangents)
    return stop_gradient(out), stop_gradient(tangent_out)


def barrier(structure):
    """`structure`, unchanged (eager PyTorch needs no barrier)."""
    return structure
