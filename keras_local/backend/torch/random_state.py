"""PyTorch's global random state.

Keras's torch backend draws unseeded dropout (a `Dropout` layer built
without `seed=`) from torch's global generator, not from the layer's seed
state, so two forward passes of one step would see different masks. A rule
that needs the same masks in several passes (zeroth-order SPSA) saves the
state once and rewinds to it before each pass.
"""

import torch


def global_random_state():
    """`(cpu_state, cuda_state or None)` of torch's global generators."""
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state()
    return torch.get_rng_state(), cuda


def restore_global_random_state(state):
    """Rewinds torch's global generators to `state` (from
    `global_random_state`); `None` does nothing."""
    if state is None:
        return
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)
