"""Calling a Python/NumPy function on PyTorch tensors."""

import numpy as np
import torch


def host_call(fn, inputs, output_spec):
    """`fn(*numpy_inputs) -> numpy`, called directly on detached CPU copies;
    the result is a new tensor (no autograd graph) on the inputs' device.
    `output_spec` is `(shape, dtype)`; the result's shape is not checked
    here (callers check)."""
    _, dtype = output_spec
    device = inputs[0].device if inputs and isinstance(inputs[0], torch.Tensor) else None
    arrays = [
        i.detach().cpu().numpy() if isinstance(i, torch.Tensor) else np.asarray(i)
        for i in inputs
    ]
    out = torch.as_tensor(np.asarray(fn(*arrays), dtype=dtype))
    return out.to(device) if device is not None else out
