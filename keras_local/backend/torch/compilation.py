"""Whether the running code is compiled (PyTorch)."""

import torch


def fuses_elementwise(x):
    """True only while `torch.compile` traces the code (Inductor fuses
    elementwise chains on `x`); Keras's torch trainer runs eagerly by
    default, where every op is its own pass over memory."""
    del x  # the mode, not the tensor, decides
    return torch.compiler.is_compiling()
