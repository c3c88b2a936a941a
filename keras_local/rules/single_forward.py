"""Single-forward (SF) learning (Park et al., ICLR 2024) as pure functions.

The SF rule trains each block without negative data: the block maps the
samples *and* one embedding per class (the "virtual nodes" of the graph
version) through the same weights, and a softmax over the similarities of
each sample with the classes is trained with cross-entropy. Everything here
works on rows: `(rows, ...)` tensors whose non-batch axes are flattened, so
the same functions serve dense activities `(B, D)`, images `(B, H, W, C)`
and node features `(N, D)` of the graph version.

Stable API (imported by the graph rules, keep the signatures):

- `row_normalize(x, epsilon=1e-8)`
- `initial_class_embeddings(num_classes, feature_shape, seed=0)`
- `similarity_logits(activity, class_activity, temperature=1.0)`
- `single_forward_loss(activity, class_activity, labels, temperature=1.0,
  sample_weight=None, num_classes=None)`
- `class_probabilities(activity, class_activity, temperature=1.0)`
- `topdown_input(previous, next_activity)`
- `alternating_groups(num_blocks, alternating=True)`
- `topdown_loss_embedding(current, above)`
- `label_states(labels_or_probabilities, num_classes, dtype)`
"""

import numpy as np
from keras import ops

from keras_local.rules.precision import full_precision

# The reference normalises every layer input by its L2 norm (+1e-8).
DEFAULT_EPSILON = 1e-8


def _flatten_rows(x):
    if len(x.shape) == 2:
        return x
    return ops.reshape(x, (ops.shape(x)[0], -1))


def row_normalize(x, epsilon=DEFAULT_EPSILON):
    """Each row divided by its L2 norm over all non-batch axes.

    `x / (||x||_2 + epsilon)`, the reference's "LayerNormalization", applied
    to every block input. A row of zeros stays zero.

    Args:
        x: tensor `(rows, ...)`.
        epsilon: float added to the norm. Defaults to `1e-8`.

    Returns:
        A tensor shaped like `x`.
    """
    dtype = ops.convert_to_tensor(x).dtype
    x = full_precision(x)  # a float16 sum of squares overflows
    axes = tuple(range(1, len(x.shape)))
    norm = ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True))
    return ops.cast(x / (norm + epsilon), dtype)


def initial_class_embeddings(num_classes, feature_shape, seed=0):
    """Fixed random class inputs, one per class: `N(0, 1)` draws.

    The reference gives the virtual class nodes `nn.Embedding` rows (a
    standard normal draw) that stay fixed. Drawn with NumPy from `seed`, so
    every backend starts from the same embeddings.

    Args:
        num_classes: int.
        feature_shape: tuple, shape of one input row (without batch axis).
        seed: int. Defaults to `0`.

    Returns:
        A float32 NumPy array `(num_classes,) + feature_shape`.
    """
    rng = np.random.default_rng(seed)
    shape = (int(num_classes),) + tuple(int(d) for d in feature_shape)
    return rng.standard_normal(shape).astype("float32")


def similarity_logits(activity, class_activity, temperature=1.0):
    """Dot-product similarities of samples with classes, over temperature.

    `logits[b, k] = <flat(activity[b]), flat(class_activity[k])> / T`.

    Args:
        activity: tensor `(B, ...)`, the block's output for the samples.
        class_activity: tensor `(K, ...)`, the same block's output for the
            class embeddings (same non-batch shape as `activity`).
        temperature: float > 0. Defaults to `1.0`.

    Returns:
        A tensor `(B, K)`, in float32 for float16/bfloat16 activity.
    """
    a = _flatten_rows(full_precision(activity))
    c = _flatten_rows(full_precision(class_activity))
    # Keras's PyTorch `matmul` returns float32 for float64 operands.
    logits = ops.cast(ops.matmul(a, ops.transpose(c)), a.dtype)
    if temperature != 1.0:
        logits = logits / ops.cast(temperature, logits.dtype)
    return logits


def single_forward_loss(
    activity, class_activity, labels, temperature=1.0, sample_weight=None,
    num_classes=None,
):
    """The SF loss: cross-entropy of the softmax over class similarities.

    `mean_b w_b * CE(softmax(similarity_logits(...))[b], labels[b])`. With
    `sample_weight=None` this is PyTorch's `CrossEntropyLoss()` (mean
    reduction) as in the reference; with weights it is the mean of the
    weighted per-sample losses (the Keras convention).

    Args:
        activity: tensor `(B, ...)`.
        class_activity: tensor `(K, ...)`.
        labels: integer tensor `(B,)`.
        temperature: float. Defaults to `1.0`.
        sample_weight: `None` or tensor `(B,)`. Defaults to `None`.
        num_classes: int or `None`, `K`; needed when `class_activity`'s
            first axis is not static (e.g. sliced from a batch in a
            TensorFlow graph). Defaults to `None` (read from the shape).

    Returns:
        A scalar tensor.
    """
    logits = similarity_logits(activity, class_activity, temperature)
    if num_classes is None:
        num_classes = class_activity.shape[0]
    target = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"),
                         num_classes, dtype=logits.dtype)
    log_p = ops.log_softmax(logits, axis=-1)
    per_sample = -ops.sum(target * log_p, axis=-1)
    if sample_weight is not None:
        weight = ops.cast(ops.reshape(sample_weight, (-1,)), per_sample.dtype)
        per_sample = per_sample * weight
    return ops.mean(per_sample)


def class_probabilities(activity, class_activity, temperature=1.0):
    """`softmax(similarity_logits(...))`, shape `(B, K)`: a block's vote.

    The reference predicts with the sum over blocks of these.
    """
    return ops.softmax(
        similarity_logits(activity, class_activity, temperature), axis=-1
    )


def topdown_input(previous, next_activity):
    """The input of a top-down block: `[norm(previous), norm(next)]`.

    The reference's "top-to-input" SF concatenates the row-normalised
    activity of the block below (or the data) with the row-normalised
    activity of the block above from the previous step (or the label rows
    for the top block). Both are vectors `(rows, D)`; `next_activity` must be
    detached by the caller (the reference detaches it).

    Args:
        previous: tensor `(rows, D1)`.
        next_activity: tensor `(rows, D2)`.

    Returns:
        A tensor `(rows, D1 + D2)`.
    """
    if len(previous.shape) != 2 or len(next_activity.shape) != 2:
        raise ValueError(
            "Top-down single-forward needs vector activities (rows, units). "
            f"Received: shapes {tuple(previous.shape)} and "
            f"{tuple(next_activity.shape)}. Flatten the blocks' outputs."
        )
    return ops.concatenate(
        [row_normalize(previous), row_normalize(next_activity)], axis=-1
    )


def alternating_groups(num_blocks, alternating=True):
    """The order of updates within one step of top-down SF.

    With `alternating=True`, `[[0, 2, 4, ...], [1, 3, ...]]`: even blocks
    update first from the previous step's states, then odd blocks use the
    even blocks' new activities. Otherwise one group, `[[0, 1, ...]]`, all
    from the previous step's states.
    """
    blocks = list(range(int(num_blocks)))
    if not alternating:
        return [blocks]
    groups = [blocks[0::2], blocks[1::2]]
    return [g for g in groups if g]


def topdown_loss_embedding(current, above):
    """The "top-to-loss" SF embedding: mean of `current` and the (detached,
    same-shaped) activities of the blocks above, `mean([current] + above)`.
    """
    return ops.mean(ops.stack([current] + list(above), axis=0), axis=0)


def label_states(labels_or_probabilities, num_classes, dtype="float32"):
    """The state above the top block: one-hot labels `(rows, K)` for integer
    labels `(rows,)`, or the given `(rows, K)` probabilities (e.g. the
    uniform "unknown label" rows `1 / K`)."""
    x = labels_or_probabilities
    if len(x.shape) == 1:
        return ops.one_hot(ops.cast(x, "int32"), num_classes, dtype=dtype)
    return ops.cast(x, dtype)
