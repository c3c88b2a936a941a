"""Target projection (DRTP, tpSGD), feedback alignment (FA) and direct
feedback alignment (DFA) as pure functions of tensors.

Conventions: a projection matrix `B` has shape `(num_classes, target_dim)`;
the projected target of a batch of one-hot labels `y*` `(batch, K)` is
`y* @ B`, shape `(batch, target_dim)`. A block's output `h` is first reduced
to the tensor compared with that target by `readout(h, mode)`.
"""

import keras
from keras import ops

from keras_local import backend
from keras_local.rules.precision import full_precision

RULES = ("drtp", "tpsgd")
READOUT_MODES = ("flat", "pooled", "grid", "final", "sequence")

# Losses whose target must be a distribution: (keras function, squashing of
# the projected target); the block output is read as logits.
_LOGIT_LOSSES = {
    "categorical_crossentropy": (
        keras.losses.categorical_crossentropy,
        lambda t: ops.softmax(t, axis=-1),
    ),
    "binary_crossentropy": (
        keras.losses.binary_crossentropy,
        ops.sigmoid,
    ),
}
_LOSS_ALIASES = {
    "cce": "categorical_crossentropy",
    "crossentropy": "categorical_crossentropy",
    "bce": "binary_crossentropy",
}


def one_hot_labels(y, num_classes, dtype="float32"):
    """One-hot `(batch, K)` from integer labels `(batch,)`/`(batch, 1)`, or
    one-hot labels `(batch, K)` passed through."""
    if len(y.shape) == 2 and y.shape[-1] == num_classes and num_classes > 1:
        return ops.cast(y, dtype)
    y = ops.cast(ops.reshape(y, (-1,)), "int32")
    return ops.one_hot(y, num_classes, dtype=dtype)


def project_targets(one_hot, projection):
    """The projected target `y* @ B`, shape `(batch, target_dim)`."""
    return ops.matmul(ops.cast(one_hot, projection.dtype), projection)


def readout(h, mode, grid=1):
    """What of a block output `h` is compared with the projected target.

    `"flat"`: every feature, `(batch, prod(h.shape[1:]))`; `"pooled"`: the
    mean over the spatial/time axes, `(batch, channels)`; `"grid"`: the
    means over a `grid x grid (x ...)` partition of the spatial axes into
    equal cells, flattened, `(batch, grid**spatial_rank * channels)`;
    `"final"`: the last time step of a sequence `(batch, time, units)`,
    `(batch, units)`; `"sequence"`: the whole sequence `(batch, time,
    units)` (the target is broadcast over time).
    """
    if mode == "flat":
        return ops.reshape(h, (ops.shape(h)[0], -1))
    if mode == "pooled":
        return ops.mean(h, axis=tuple(range(1, len(h.shape) - 1)))
    if mode == "grid":
        spatial = [int(d) for d in h.shape[1:-1]]
        check_grid(spatial, grid)
        split = [ops.shape(h)[0]]
        for size in spatial:
            split += [grid, size // grid]
        cells = ops.reshape(h, tuple(split) + (int(h.shape[-1]),))
        cells = ops.mean(cells, axis=tuple(range(2, 2 * len(spatial) + 1, 2)))
        return ops.reshape(cells, (ops.shape(h)[0], -1))
    if mode == "final":
        return h[:, -1]
    if mode == "sequence":
        return h
    raise ValueError(
        f"Unknown readout. Expected one of {READOUT_MODES}. Received: "
        f"mode={mode!r}"
    )


def check_grid(spatial_shape, grid):
    """Raises a `ValueError` unless `grid` cells split every spatial axis
    of `spatial_shape` evenly."""
    bad = [int(d) for d in spatial_shape if int(d) % int(grid)]
    if not spatial_shape or bad:
        raise ValueError(
            f"A grid of {grid} cells per axis must split every spatial axis "
            f"of the feature map evenly. Received: spatial shape "
            f"{tuple(spatial_shape)} and grid={grid}. Pick a grid that "
            "divides every spatial size (1 is the global mean per channel)."
        )


def readout_dim(output_shape, mode, grid=1):
    """Target width of a block output shape (without batch) for `mode`."""
    output_shape = tuple(output_shape)
    if mode == "flat":
        dim = 1
        for d in output_shape:
            dim *= int(d)
        return dim
    if mode == "grid":
        check_grid(output_shape[:-1], grid)
        return int(grid) ** len(output_shape[:-1]) * int(output_shape[-1])
    return int(output_shape[-1])


def _broadcast_target(target, h):
    """`target` `(batch, D)` shaped like `h` `(batch, [time,] D)`."""
    if len(h.shape) == 3:
        return ops.expand_dims(target, 1)
    return target


def weighted_mean(per_sample, sample_weight=None):
    """Mean over the batch, each sample weighted (Keras convention: the sum
    of weighted losses divided by the batch size)."""
    if sample_weight is None:
        return ops.mean(per_sample)
    weight = ops.cast(ops.reshape(sample_weight, (-1,)), per_sample.dtype)
    return ops.mean(per_sample * weight)


def drtp_loss(h, target, sample_weight=None):
    """The DRTP surrogate `-mean_batch(sum(target * h))`.

    Its gradient with respect to the block's parameters is the DRTP update
    (Frenkel et al. 2021): the modulatory signal `-(y* B)` multiplied by the
    derivative of the block's own nonlinearity, e.g. for a dense block
    `h = f(x W + b)`: `dW = -x^T ((y* B) * f'(a)) / batch`. `h` is a readout
    `(batch, D)` or a sequence `(batch, time, D)` (mean over time).
    """
    h = full_precision(h)
    target = ops.cast(backend_stop(target), h.dtype)
    per_step = -ops.sum(_broadcast_target(target, h) * h, axis=-1)
    if len(per_step.shape) == 2:
        per_step = ops.mean(per_step, axis=1)
    return weighted_mean(per_step, sample_weight)


def check_local_loss(name):
    """Validates a tpSGD local loss name; returns its canonical name."""
    if not isinstance(name, str):
        raise ValueError(
            "`local_loss` must be the name of a Keras loss, e.g. 'mse', "
            "'categorical_crossentropy' or 'binary_crossentropy'. Received: "
            f"local_loss={name!r}"
        )
    name = _LOSS_ALIASES.get(name, name)
    if name in _LOGIT_LOSSES:
        return name
    try:
        fn = keras.losses.get(name)
    except (ValueError, TypeError):
        fn = None
    if fn is None or isinstance(fn, type):
        raise ValueError(
            "Unknown `local_loss`. Expected the name of a Keras loss "
            "function, e.g. 'mse', 'mae', 'huber', 'categorical_crossentropy' "
            f"or 'binary_crossentropy'. Received: local_loss={name!r}"
        )
    return name


def tpsgd_loss(h, target, loss_name, sample_weight=None):
    """The tpSGD local loss: a Keras loss between the projected target and
    the block readout.

    Regression losses (`"mse"`, `"mae"`, `"huber"`, ...) compare `h` with
    `y* B` directly; `"categorical_crossentropy"` compares the logits `h`
    with `softmax(y* B)` and `"binary_crossentropy"` with `sigmoid(y* B)`.
    For sequences `(batch, time, D)` the loss is taken at every step against
    the same target and averaged over time.
    """
    loss_name = check_local_loss(loss_name)
    h = full_precision(h)
    target = ops.cast(backend_stop(target), h.dtype)
    target = ops.broadcast_to(_broadcast_target(target, h), ops.shape(h))
    if loss_name in _LOGIT_LOSSES:
        fn, squash = _LOGIT_LOSSES[loss_name]
        per_step = fn(squash(target), h, from_logits=True)
    else:
        per_step = keras.losses.get(loss_name)(target, h)
    if len(per_step.shape) == 2:
        per_step = ops.mean(per_step, axis=1)
    return weighted_mean(per_step, sample_weight)


def dfa_surrogate(h, feedback, sample_weight=None):
    """The DFA surrogate `sum(feedback * h)` whose parameter gradient is the
    DFA update: `feedback = e B` (the output error `e` already holds the
    `1/batch` of a mean loss). Sequences share `feedback` over time
    (averaged)."""
    del sample_weight  # already inside the output error
    h = full_precision(h)
    feedback = ops.cast(backend_stop(feedback), h.dtype)
    per_step = ops.sum(_broadcast_target(feedback, h) * h, axis=-1)
    if len(per_step.shape) == 2:
        per_step = ops.mean(per_step, axis=1)
    return ops.sum(per_step)


def backend_stop(x):
    return backend.stop_gradient(x)


def feedback_alignment_call(forward, x, params, feedback, kernel_index=0):
    """`forward(x, params)` whose input gradient uses `feedback` in place of
    `params[kernel_index]` (feedback alignment, Lillicrap et al. 2016).

    `forward` must be affine in `x` (a `Dense` or convolution without its
    activation). The value is `forward(x, params)`; the gradients are
    `dx = J_x(forward(., params with feedback))^T e` (for a dense layer
    `e B^T`, for a convolution the transposed convolution of `e` with `B`)
    and the usual `dparams = J_params(forward(x, .))^T e`; `feedback` gets a
    zero gradient. Implemented with `keras.ops.custom_gradient`.

    Args:
        forward: function `(x, params) -> outputs`.
        x: the input tensor.
        params: list of parameter tensors.
        feedback: tensor shaped like `params[kernel_index]`.
        kernel_index: which parameter the feedback replaces. Defaults to `0`.

    Returns:
        `forward(x, params)`.
    """
    count = len(params)

    @ops.custom_gradient
    def call(x, feedback, *params):
        params = list(params)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            upstream = backend_stop(upstream)
            swapped = list(params)
            swapped[kernel_index] = feedback

            def through_feedback(values):
                return ops.sum(ops.cast(forward(values[0], swapped), upstream.dtype) * upstream)

            def through_params(values):
                return ops.sum(ops.cast(forward(x, values), upstream.dtype) * upstream)

            _, (dx,) = backend.value_and_grad(through_feedback)([x])
            _, dparams = backend.value_and_grad(through_params)(params)
            return (dx, ops.zeros_like(feedback), *dparams)

        return forward(x, params), grad

    if len(params) != count or not 0 <= kernel_index < count:
        raise ValueError(
            f"`kernel_index` must index `params`. Received: kernel_index="
            f"{kernel_index} for {count} parameters."
        )
    # Plain tensors, not variables: TensorFlow's custom gradient rejects
    # functions that read variables.
    return call(
        ops.copy(x), ops.copy(feedback), *[ops.copy(p) for p in params]
    )
