"""Pure math of supervised local learning with auxiliary networks.

DGL (Belilovsky et al. 2020), InfoPro (Wang et al. 2021), AugLocal (Ma et
al. 2024) and the Momentum Auxiliary Network (Su et al. 2024).
"""

import numpy as np
from keras import ops

AUXILIARY_TYPES = ("dgl", "infopro", "auglocal", "man")


def infopro_loss(reconstruction, target, class_loss, lambda_reconstruction,
                 lambda_class):
    """The InfoPro surrogate: `l1 * mean((r - x)^2) + l2 * class_loss`.

    Args:
        reconstruction: the decoder's reconstruction of the input.
        target: the (detached) input it reconstructs.
        class_loss: scalar, the auxiliary classifier's loss.
        lambda_reconstruction: float, lambda_1.
        lambda_class: float, lambda_2.

    Returns:
        A scalar.
    """
    reconstruction = ops.cast(reconstruction, "float32")
    target = ops.cast(target, "float32")
    mse = ops.mean(ops.square(reconstruction - target))
    return lambda_reconstruction * mse + lambda_class * ops.cast(
        class_loss, "float32"
    )


def auglocal_depth(k, num_modules, max_depth, min_depth=1):
    """AugLocal's pyramidal depth of module `k`'s auxiliary network.

    Depth decreases linearly from `max_depth` (first module, `k=0`) to
    `min_depth` (the module before the last, `k=num_modules-2`):
    `d_k = round(max_depth - (max_depth - min_depth) * k / (K - 2))`
    (`max_depth` when `K == 2`).
    """
    if num_modules <= 2:
        return int(max_depth)
    frac = k / (num_modules - 2)
    return int(max(min_depth, round(max_depth - (max_depth - min_depth) * frac)))


def uniform_selection(num_available, depth):
    """Indices of `depth` units chosen uniformly among `num_available`,
    always including the first and the last."""
    depth = int(min(max(depth, 1), num_available))
    if depth == 1:
        return [num_available - 1]
    return sorted(
        {int(round(i)) for i in np.linspace(0, num_available - 1, depth)}
    )


def ema_update(ema, value, momentum):
    """MAN's exponential moving average: `m * ema + (1 - m) * value`."""
    return momentum * ema + (1.0 - momentum) * ops.cast(value, ema.dtype)
