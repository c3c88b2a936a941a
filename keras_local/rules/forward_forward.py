"""Forward-Forward (Hinton 2022) as pure functions of tensors."""

from keras import ops

from keras_local.rules.portable_random import portable_randint

LOSSES = ("softplus", "symba")
NORMALIZATIONS = ("rms", "l2", "none")
LABEL_EMBEDDINGS = ("overlay", "append")


def _feature_axes(x):
    return tuple(range(1, len(x.shape)))


def goodness(activity):
    """Mean of squared activities over every non-batch axis: shape `(B,)`."""
    return ops.mean(ops.square(activity), axis=_feature_axes(activity))


def normalize_length(x, mode="rms", epsilon=1e-4):
    """Keeps only the direction of each sample's activity vector.

    `"l2"`: x / (||x|| + eps) (the common PyTorch reference);
    `"rms"`: x / (sqrt(mean(x**2)) + eps), which does not shrink with the
    width; `"none"`: x unchanged.
    """
    if mode == "none":
        return x
    axes = _feature_axes(x)
    if mode == "l2":
        norm = ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True))
    elif mode == "rms":
        norm = ops.sqrt(ops.mean(ops.square(x), axis=axes, keepdims=True))
    else:
        raise ValueError(
            f"Unknown normalization. Expected one of {NORMALIZATIONS}. "
            f"Received: normalization={mode!r}"
        )
    return x / (norm + epsilon)


def forward_forward_loss(
    positive_goodness, negative_goodness, threshold=2.0, loss="softplus",
    alpha=4.0,
):
    """Per-sample Forward-Forward loss, shape `(B,)`.

    `"softplus"`: softplus(-(g_pos - theta)) + softplus(g_neg - theta);
    `"symba"`: softplus(-alpha * (g_pos - g_neg)) (Lee & Song 2023).
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
    """Writes a one-hot label into a batch of vectors `(B, D)`.

    `"overlay"` replaces the first `num_classes` features (as in the paper);
    `"append"` concatenates the one-hot after the features. `labels` may be
    integers `(B,)` or a `(B, num_classes)` float embedding (e.g. the
    uniform "neutral" label).
    """
    if len(labels.shape) == 1:
        code = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype=x.dtype)
    else:
        code = ops.cast(labels, x.dtype)
    code = code * ops.cast(scale, x.dtype)
    if mode == "overlay":
        return ops.concatenate([code, x[:, num_classes:]], axis=-1)
    if mode == "append":
        return ops.concatenate([x, code], axis=-1)
    raise ValueError(
        "Unknown label embedding. Expected one of "
        f"{LABEL_EMBEDDINGS}. Received: label_embedding={mode!r}"
    )


def random_wrong_labels(labels, num_classes, seed):
    """A uniformly drawn label different from each true label.

    Drawn with `portable_randint`, so every backend draws the same labels
    from the same seed.
    """
    labels = ops.cast(labels, "int32")
    offset = 1 + portable_randint(seed, ops.shape(labels), num_classes - 1)
    return ops.mod(labels + offset, num_classes)


def hardest_wrong_labels(scores, labels):
    """The most-confused wrong label: argmax of `scores` (B, K) over the
    labels that are not the true one."""
    num_classes = scores.shape[-1]
    mask = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype=scores.dtype)
    masked = scores - mask * ops.cast(1e9, scores.dtype)
    return ops.cast(ops.argmax(masked, axis=-1), "int32")
