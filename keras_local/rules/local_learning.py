"""Pure math of supervised local learning with auxiliary networks.

DGL (Belilovsky et al. 2020), InfoPro (Wang et al. 2021), AugLocal (Ma et
al. 2024) and the Momentum Auxiliary Network (Su et al. 2024).
"""

from keras import ops

from keras_local.rules.precision import full_precision

AUXILIARY_TYPES = ("dgl", "infopro", "auglocal", "man")


RECONSTRUCTION_LOSSES = ("mse", "binary_crossentropy")
MAN_HEADS = ("dgl", "infopro")


def infopro_loss(reconstruction, target, class_loss, lambda_reconstruction,
                 lambda_class, reconstruction_loss="mse", sample_weight=None):
    """The InfoPro surrogate: `l1 * reconstruction_error + l2 * class_loss`.

    Args:
        reconstruction: the decoder's output: the reconstructed input for
            `"mse"`, logits of it for `"binary_crossentropy"`.
        target: the (detached) input it reconstructs; in [0, 1] for
            `"binary_crossentropy"`.
        class_loss: scalar, the auxiliary classifier's loss.
        lambda_reconstruction: float, lambda_1.
        lambda_class: float, lambda_2.
        reconstruction_loss: `"mse"` (`mean((r - x)^2)`) or
            `"binary_crossentropy"` (the mean binary cross-entropy of
            `sigmoid(r)` against `x`, as InfoPro's reference decoder).
        sample_weight: optional, one weight per example, applied to the
            reconstruction error as Keras applies it to a compiled loss
            (`sum_i w_i e_i / batch_size`, `e_i` the example's mean error);
            `class_loss` is expected to be weighted already.

    Returns:
        A scalar.
    """
    reconstruction = full_precision(reconstruction)
    target = ops.cast(target, reconstruction.dtype)
    if reconstruction_loss == "binary_crossentropy":
        # From logits: max(r, 0) - r x + log(1 + exp(-|r|)).
        error = (
            ops.relu(reconstruction) - reconstruction * target
            + ops.log1p(ops.exp(-ops.abs(reconstruction)))
        )
    else:
        error = ops.square(reconstruction - target)
    if sample_weight is None:
        error = ops.mean(error)
    else:
        per_example = ops.mean(error, axis=tuple(range(1, len(error.shape))))
        weight = ops.reshape(ops.cast(sample_weight, error.dtype), (-1,))
        error = ops.mean(per_example * weight)
    return lambda_reconstruction * error + lambda_class * ops.cast(
        class_loss, error.dtype
    )


def infopro_module_lambdas(k, num_modules, first, last):
    """`(lambda_1, lambda_2)` of module `k`: linear from `first` (module 0)
    to `last` (module `K - 2`, the last with an auxiliary network), as the
    InfoPro reference code's `ixx`/`ixy` schedule (`first` for all when
    `K <= 2`)."""
    ratio = k / (num_modules - 2) if num_modules > 2 else 0.0
    return tuple(
        float(a) * (1.0 - ratio) + float(b) * ratio for a, b in zip(first, last)
    )


def auglocal_depth(k, num_modules, max_depth, pyramid_coefficient=0.5):
    """AugLocal's pyramidal depth of module `k`'s auxiliary network.

    With `r = pyramid_coefficient * k / (K - 2)`, the depth is
    `max(1, round(max_depth * (1 - r) + r))`: `max_depth` for the first
    module, shrinking linearly towards 1, which the module before the last
    (`k = K - 2`) reaches when the coefficient is 1 (`max_depth` for every
    module when it is 0, or when `K <= 2`). Python's `round`, as in
    AugLocal's reference code.
    """
    if num_modules <= 2:
        return int(max_depth)
    ratio = pyramid_coefficient * k / (num_modules - 2)
    return int(max(1, round(max_depth * (1.0 - ratio) + ratio)))


def uniform_selection(num_later, depth, position=0):
    """Indices (0 = the first) of the `depth` later layers, of `num_later`,
    that AugLocal copies into the auxiliary network of the module ending at
    layer `position`: all of them when `depth >= num_later`, else evenly
    spaced and ending at the last one. The reference code's indices
    `round(position + num_later * i / depth)`, `i = 1..depth`, counted from
    the layer after `position`."""
    depth = int(max(depth, 1))
    if depth >= num_later:
        return list(range(num_later))
    return [
        int(round(position + num_later * i / depth)) - position - 1
        for i in range(1, depth + 1)
    ]


def ema_update(ema, value, momentum):
    """MAN's exponential moving average: `m * ema + (1 - m) * value`."""
    return momentum * ema + (1.0 - momentum) * ops.cast(value, ema.dtype)
