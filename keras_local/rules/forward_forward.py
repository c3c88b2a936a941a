"""Forward-Forward (Hinton 2022) as pure functions of tensors."""

from keras import ops

from keras_local.rules.portable_random import portable_randint
from keras_local.rules.precision import full_precision

LOSSES = ("softplus", "symba")
# "competitive" needs every class's goodness from one pass: channel-wise
# goodness only.
CHANNELWISE_LOSSES = LOSSES + ("competitive",)
GOODNESS_TYPES = ("block", "channelwise")
NORMALIZATIONS = ("rms", "l2", "none")
# "layer" (centre, then rms) is offered where a block reads raw physical
# measurements, whose per-sample offset carries little information.
MEASUREMENT_NORMALIZATIONS = NORMALIZATIONS + ("layer",)
LABEL_EMBEDDINGS = ("overlay", "append")


def _feature_axes(x):
    return tuple(range(1, len(x.shape)))


def goodness(activity, reduction="mean"):
    """Goodness of each sample: its mean (or summed) squared activity.

    Args:
        activity: tensor `(B, ...)`, a block's output.
        reduction: `"mean"` or `"sum"` of the squares over every non-batch
            axis. Defaults to `"mean"`, which does not grow with the width.

    Returns:
        A tensor `(B,)`, in float32 for float16/bfloat16 activity.

    Example:

    ```python
    g = keras_local.rules.goodness(np.array([[1.0, 2.0], [0.0, 3.0]]))
    # [2.5, 4.5]
    ```

    References:
        - Hinton, "The Forward-Forward Algorithm: Some Preliminary
          Investigations", 2022.
    """
    activity = full_precision(activity)
    if reduction == "sum":
        return ops.sum(ops.square(activity), axis=_feature_axes(activity))
    return ops.mean(ops.square(activity), axis=_feature_axes(activity))


def channelwise_goodness(activity, num_classes, reduction="mean"):
    """Class-wise goodness from one pass: shape `(B, num_classes)`.

    The last axis (channels, or units of a dense block) is split into
    `num_classes` equal, contiguous groups; entry `[b, k]` is the mean (or,
    with `reduction="sum"`, the sum) of squared activities of group `k`
    over every non-batch position of sample `b` (Papachristodoulou et al.,
    "Convolutional Channel-wise Competitive Learning for the Forward-Forward
    Algorithm", AAAI 2024). The caller checks that the groups divide.
    """
    activity = full_precision(activity)
    channels = activity.shape[-1]
    grouped = ops.reshape(
        ops.square(activity), (ops.shape(activity)[0], -1, num_classes, channels // num_classes)
    )
    if reduction == "sum":
        return ops.sum(grouped, axis=(1, 3))
    return ops.mean(grouped, axis=(1, 3))


def split_class_goodness(class_goodness, labels):
    """`(g_pos, g_neg)` of shape `(B,)` from class-wise goodness `(B, K)`:
    the true class's goodness, and the mean goodness of the other classes
    (the CwC paper's positive and negative goodness of one pass)."""
    class_goodness = ops.convert_to_tensor(class_goodness)
    num_classes = class_goodness.shape[-1]
    mask = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype=class_goodness.dtype)
    g_pos = ops.sum(class_goodness * mask, axis=-1)
    g_neg = ops.sum(class_goodness * (1.0 - mask), axis=-1) / (num_classes - 1)
    return g_pos, g_neg


def channelwise_loss(class_goodness, labels, threshold=2.0, loss="competitive", alpha=4.0):
    """Per-sample loss `(B,)` of class-wise goodness `(B, K)`.

    `"competitive"`: the CwC loss, cross-entropy of the softmax over the
    class goodness with the true label; `"softplus"` / `"symba"`: the
    Forward-Forward losses with the true class's goodness as positive and
    the other classes' mean goodness as negative.
    """
    if loss == "competitive":
        log_probabilities = ops.log_softmax(class_goodness, axis=-1)
        mask = ops.one_hot(ops.cast(labels, "int32"), class_goodness.shape[-1],
                           dtype=log_probabilities.dtype)
        return -ops.sum(log_probabilities * mask, axis=-1)
    if loss not in LOSSES:
        raise ValueError(
            f"Unknown channel-wise loss. Expected one of {CHANNELWISE_LOSSES}. "
            f"Received: loss={loss!r}"
        )
    g_pos, g_neg = split_class_goodness(class_goodness, labels)
    return forward_forward_loss(g_pos, g_neg, threshold, loss, alpha)


def peer_normalization(activity, running_mean, momentum=0.9):
    """Peer normalisation (Hinton 2022, sec. 3.5).

    Updates a running mean of each unit's activity (over the batch and any
    spatial axes; `activity` is the positive pass) and returns
    `(loss, new_running_mean)` with
    `loss = mean_j (mean_k(r_k) - r_j) ** 2`, which pushes every unit's mean
    activity toward the layer's mean. The current batch's share of the
    running mean carries the gradient; the old running mean does not.
    """
    activity = full_precision(activity)
    running_mean = ops.convert_to_tensor(running_mean)
    state_dtype = running_mean.dtype
    running_mean = ops.cast(running_mean, activity.dtype)
    axes = tuple(range(len(activity.shape) - 1))
    batch_mean = ops.mean(activity, axis=axes)
    new_mean = ops.stop_gradient(running_mean) * momentum + batch_mean * (1.0 - momentum)
    loss = ops.mean(ops.square(ops.mean(new_mean) - new_mean))
    # The state keeps its own dtype (a float32 model may hold a float64 block).
    return loss, ops.cast(new_mean, state_dtype)


def normalize_length(x, mode="rms", epsilon=1e-4):
    """Keeps only the direction of each sample's activity vector.

    Forward-Forward normalises a block's output before the next block, so
    that the next block cannot read the goodness from its length.

    Args:
        x: tensor `(B, ...)`; every non-batch axis is normalised together.
        mode: `"l2"`: x / (||x|| + eps) (the common PyTorch reference);
            `"rms"`: x / (sqrt(mean(x**2)) + eps), which does not shrink
            with the width; `"layer"`: the sample's mean is subtracted
            first, then the `"rms"` scaling (a layer normalisation without
            gain or bias); `"none"`: x unchanged. Defaults to `"rms"`.
        epsilon: float added to the norm. Defaults to `1e-4`.

    Returns:
        A tensor of the shape of `x`.

    Example:

    ```python
    x = np.array([[3.0, 4.0]])
    keras_local.rules.normalize_length(x, mode="l2")   # ~[[0.6, 0.8]]
    keras_local.rules.normalize_length(x, mode="rms")  # ~[[0.85, 1.13]]
    ```

    References:
        - Hinton, "The Forward-Forward Algorithm: Some Preliminary
          Investigations", 2022.
    """
    if mode == "none":
        return x
    dtype = ops.convert_to_tensor(x).dtype
    x = full_precision(x)  # a float16 sum of squares overflows
    axes = _feature_axes(x)
    if mode == "layer":
        x = ops.subtract(x, ops.mean(x, axis=axes, keepdims=True))
        mode = "rms"
    if mode == "l2":
        norm = ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True))
    elif mode == "rms":
        norm = ops.sqrt(ops.mean(ops.square(x), axis=axes, keepdims=True))
    else:
        raise ValueError(
            f"Unknown normalization. Expected one of {MEASUREMENT_NORMALIZATIONS}. "
            f"Received: normalization={mode!r}"
        )
    return ops.cast(x / (norm + epsilon), dtype)


def forward_forward_loss(
    positive_goodness, negative_goodness, threshold=2.0, loss="softplus",
    alpha=4.0,
):
    """Per-sample Forward-Forward loss.

    Args:
        positive_goodness: tensor `(B,)`, the goodness of real data.
        negative_goodness: tensor `(B,)`, the goodness of negative data.
        threshold: float, theta of the `"softplus"` loss. Defaults to `2.0`.
        loss: `"softplus"`: softplus(-(g_pos - theta)) + softplus(g_neg -
            theta); `"symba"`: softplus(-alpha * (g_pos - g_neg)). Defaults
            to `"softplus"`.
        alpha: float, the `"symba"` scale. Defaults to `4.0`.

    Returns:
        A tensor `(B,)`.

    Example:

    ```python
    g_pos, g_neg = np.array([3.0, 1.0]), np.array([1.0, 3.0])
    loss = keras_local.rules.forward_forward_loss(g_pos, g_neg, threshold=2.0)
    # [0.63, 2.63]: the first sample is separated, the second inverted
    ```

    References:
        - Hinton, "The Forward-Forward Algorithm: Some Preliminary
          Investigations", 2022.
        - Lee and Song, "SymBa: A Symmetric Loss Function for the
          Forward-Forward Algorithm", 2023.
    """
    if loss == "softplus":
        return ops.softplus(threshold - positive_goodness) + ops.softplus(
            negative_goodness - threshold
        )
    if loss == "symba":
        return ops.softplus(-alpha * (positive_goodness - negative_goodness))
    raise ValueError(
        f"Unknown Forward-Forward loss. Expected one of {LOSSES}. "
        f"Received: loss={loss!r}"
    )


def embed_label(x, labels, num_classes, mode="overlay", scale=1.0):
    """Writes a one-hot label into a batch of vectors or images.

    Args:
        x: tensor `(B, D)` or images `(B, H, W, C)`.
        labels: integers `(B,)`, or a `(B, num_classes)` float embedding
            (e.g. the uniform "neutral" label).
        num_classes: int.
        mode: `"overlay"` replaces the first `num_classes` features (as in
            the paper); for images, the first `num_classes` pixels in
            raster order, in every channel. `"append"` concatenates the
            one-hot after the features; for images, as `num_classes` extra
            channels, constant over the image. Defaults to `"overlay"`.
        scale: float, the value of the label's "on" entry. Defaults to `1.0`.

    Returns:
        `(B, D)` or `(B, H, W, C)` with `"overlay"`; `(B, D + num_classes)`
        or `(B, H, W, C + num_classes)` with `"append"`.

    Example:

    ```python
    x = np.zeros((2, 5), "float32")
    keras_local.rules.embed_label(x, np.array([1, 2]), num_classes=3)
    # [[0, 1, 0, 0, 0], [0, 0, 1, 0, 0]]
    ```

    References:
        - Hinton, "The Forward-Forward Algorithm: Some Preliminary
          Investigations", 2022.
    """
    if len(labels.shape) == 1:
        code = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype=x.dtype)
    else:
        code = ops.cast(labels, x.dtype)
    code = code * ops.cast(scale, x.dtype)
    if mode not in LABEL_EMBEDDINGS:
        raise ValueError(
            "Unknown label embedding. Expected one of "
            f"{LABEL_EMBEDDINGS}. Received: label_embedding={mode!r}"
        )
    if len(x.shape) == 2:
        if mode == "overlay":
            return ops.concatenate([code, x[:, num_classes:]], axis=-1)
        return ops.concatenate([x, code], axis=-1)
    if len(x.shape) != 4:
        raise ValueError(
            "Labels can be embedded in vectors (B, D) or images (B, H, W, C). "
            f"Received: inputs of shape {tuple(x.shape)}."
        )
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    if mode == "append":
        plane = ops.ones_like(x[..., :1])
        return ops.concatenate([x, plane * code[:, None, None, :]], axis=-1)
    flat = ops.reshape(x, (-1, height * width, channels))
    code = ops.repeat(code[:, :, None], channels, axis=-1)
    flat = ops.concatenate([code, flat[:, num_classes:, :]], axis=1)
    return ops.reshape(flat, (-1, height, width, channels))


def random_wrong_labels(labels, num_classes, seed):
    """A uniformly drawn label different from each true label.

    Drawn with `portable_randint`, so every backend draws the same labels
    from the same seed.

    Args:
        labels: integer tensor `(B,)`.
        num_classes: int >= 2.
        seed: integer seed tensor, shape `()` or `(2,)`.

    Returns:
        An int32 tensor `(B,)`, never equal to `labels`.

    Example:

    ```python
    wrong = keras_local.rules.random_wrong_labels(
        np.array([0, 1, 2]), num_classes=10, seed=np.int32(7))
    ```

    References:
        - Hinton, "The Forward-Forward Algorithm: Some Preliminary
          Investigations", 2022.
    """
    labels = ops.cast(labels, "int32")
    offset = 1 + portable_randint(seed, ops.shape(labels), num_classes - 1)
    return ops.mod(labels + offset, num_classes)


def hardest_wrong_labels(scores, labels):
    """The most-confused wrong label of each sample (hard negatives).

    Args:
        scores: tensor `(B, K)`, e.g. each label's goodness.
        labels: integer tensor `(B,)`, the true labels.

    Returns:
        An int32 tensor `(B,)`: the argmax of `scores` over the labels that
        are not the true one.

    Example:

    ```python
    scores = np.array([[0.9, 0.5, 0.7], [0.1, 0.2, 0.3]])
    keras_local.rules.hardest_wrong_labels(scores, np.array([0, 2]))  # [2, 1]
    ```

    References:
        - Hinton, "The Forward-Forward Algorithm: Some Preliminary
          Investigations", 2022.
    """
    scores = ops.convert_to_tensor(scores)
    num_classes = scores.shape[-1]
    mask = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype=scores.dtype)
    masked = scores - mask * ops.cast(1e9, scores.dtype)
    return ops.cast(ops.argmax(masked, axis=-1), "int32")
