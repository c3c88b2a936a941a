"""Forward learning of graph neural networks (ForwardGNN, Park et al. 2024)
as pure functions of tensors.

Two groups of functions live here:

- message passing on an edge list, shared by `GCNConv`, `SAGEConv` and
  `GATConv`: `self_loop_weights`, `segment_softmax`, `propagate`. Edge
  weights act as edge multiplicities everywhere (an edge of weight 0 is
  absent, weight 2 counts twice), which lets the ForwardGNN graph
  constructions keep a static edge count under XLA.
- the ForwardGNN constructions: label appending (`append_labels`),
  virtual class nodes (`virtual_node_graph`), the FF loss on goodness
  (`goodness_bce_loss`), masked means, negative edge sampling and the
  link scores.

Graph conventions: `edge_index` is int32 `(2, E)` with row 0 the source
and row 1 the target; messages flow source -> target and each node
aggregates over its incoming edges (PyTorch Geometric's default).
"""

import numpy as np
from keras import ops

from keras_local.rules.portable_random import portable_randint
from keras_local.rules.precision import full_precision

CONVS = ("gcn", "sage", "gat")
NODE_RULES = ("ff_la", "ff_vn", "sf", "sf_topdown")
LINK_RULES = ("ff", "sf")


# ---------------------------------------------------------------------- #
# Message passing.
# ---------------------------------------------------------------------- #
def edge_weights_or_ones(edge_index, edge_weight, dtype="float32"):
    """`edge_weight` as a float vector `(E,)`, or ones when it is `None`."""
    if edge_weight is None:
        return ops.ones((ops.shape(edge_index)[1],), dtype=dtype)
    return ops.cast(ops.reshape(edge_weight, (-1,)), dtype)


def self_loop_weights(edge_index, edge_weight, num_nodes, keep_existing=True):
    """Splits an edge list into non-loop edges and one self loop per node.

    Returns `(edge_weight_without_loops, loop_weight)`: the weights of the
    `E` edges with every existing self loop zeroed, and `(num_nodes,)` loop
    weights. With `keep_existing=True` (GCN, PyG's
    `add_remaining_self_loops`) a node's loop weight is the summed weight of
    its existing self loops, or 1 where it has none; with
    `keep_existing=False` (GAT, PyG's remove-then-add) every loop weight
    is 1.
    """
    source, target = edge_index[0], edge_index[1]
    is_loop = ops.cast(ops.equal(source, target), edge_weight.dtype)
    without = edge_weight * (1.0 - is_loop)
    if not keep_existing:
        return without, ops.ones((num_nodes,), dtype=edge_weight.dtype)
    existing = ops.segment_sum(edge_weight * is_loop, target, num_segments=num_nodes)
    count = ops.segment_sum(is_loop, target, num_segments=num_nodes)
    loop = ops.where(count > 0, existing, ops.ones_like(existing))
    return without, loop


def propagate(messages, target, num_nodes):
    """Sum of the edge messages `(E, ...)` into their target nodes."""
    return ops.segment_sum(messages, target, num_segments=num_nodes)


def segment_softmax(scores, target, weight, num_nodes):
    """Softmax of edge `scores` `(E, H)` over each target node's incoming
    edges, with edge multiplicities `weight` `(E,)`:
    `alpha_e = w_e exp(s_e) / sum_{e' -> i} w_e' exp(s_e')`.
    Edges of weight 0 take no part (and get 0)."""
    present = ops.expand_dims(weight > 0, -1)
    lowest = ops.cast(-1e30, scores.dtype)
    masked = ops.where(present, scores, lowest)
    node_max = ops.segment_max(masked, target, num_segments=num_nodes)
    node_max = ops.stop_gradient(node_max)
    shifted = ops.where(present, scores - ops.take(node_max, target, axis=0), 0.0)
    numerator = ops.exp(shifted) * ops.expand_dims(weight, -1)
    numerator = ops.where(present, numerator, 0.0)
    denominator = ops.segment_sum(numerator, target, num_segments=num_nodes)
    denominator = ops.take(denominator, target, axis=0)
    return numerator / ops.maximum(denominator, 1e-30)


# ---------------------------------------------------------------------- #
# Label appending (FF+LA).
# ---------------------------------------------------------------------- #
def label_rows(labels, mask, num_classes, dtype="float32"):
    """One-hot rows of `labels` `(N,)` where `mask` `(N,)` is nonzero and
    the uniform row `1/K` elsewhere: `(N, K)`. The reference gives every
    node outside the labelled set the uniform distribution."""
    safe = ops.clip(ops.cast(labels, "int32"), 0, num_classes - 1)
    one_hot = ops.one_hot(safe, num_classes, dtype=dtype)
    uniform = ops.full_like(one_hot, 1.0 / num_classes)
    known = ops.expand_dims(ops.cast(mask, dtype) > 0, -1)
    return ops.where(known, one_hot, uniform)


def append_labels(node_features, labels, mask, num_classes):
    """FF+LA input: `[x_i, onehot(labels_i)]` for nodes in `mask`, and
    `[x_i, 1/K, ..., 1/K]` for the others: `(N, F + K)`."""
    rows = label_rows(labels, mask, num_classes, node_features.dtype)
    return ops.concatenate([node_features, rows], axis=-1)


def appended_label_projections(project, node_features, label_blocks, epsilon=1e-8):
    """`project(row_normalize([x, r]))` for every label block `r`, cheaply.

    The FF+LA inputs of one graph differ only in their last `K` columns
    (the appended labels), so for a `project` that is linear without bias
    (a graph convolution's `project`) the wide part is shared:
    `project([x, r] / s_r) = (project([x, 0]) + r project([0, I_K])) / s_r`
    with `s_r = ||[x, r]||_2 + epsilon` per row, the L2 row normalisation
    of every layer input. `project([x, 0])` runs once for all blocks
    instead of once per block, and no `(N, F + K)` input is built per
    block. Equal to the direct computation up to float rounding.

    Args:
        project: callable, `(rows, F + K) -> (rows, P)`, linear, no bias.
        node_features: `(N, F)`.
        label_blocks: list of `(N, K)` label rows (`label_rows`).
        epsilon: float added to the row norm, as `row_normalize`. Defaults
            to `1e-8`.

    Returns:
        A list of `(N, P)` tensors, one per block.
    """
    n, f = node_features.shape[0], node_features.shape[-1]
    k = label_blocks[0].shape[-1]
    dtype = node_features.dtype
    shared = project(ops.concatenate([node_features, ops.zeros((n, k), dtype)], axis=-1))
    basis = project(ops.concatenate([ops.zeros((k, f), dtype), ops.eye(k, dtype=dtype)], axis=-1))
    squares = ops.sum(ops.square(full_precision(node_features)), axis=-1)
    projections = []
    for rows in label_blocks:
        norm = ops.sqrt(squares + ops.sum(ops.square(full_precision(rows)), axis=-1)) + epsilon
        projections.append(
            (shared + ops.matmul(rows, basis)) / ops.cast(ops.expand_dims(norm, -1), shared.dtype)
        )
    return projections


# ---------------------------------------------------------------------- #
# Virtual class nodes (FF+VN, SF).
# ---------------------------------------------------------------------- #
def virtual_node_graph(
    node_features, edge_index, edge_weight, labels, mask, class_features,
    bidirectional=True,
):
    """The graph augmented with one virtual node per class.

    Nodes `0..N-1` are the real nodes, `N..N+K-1` the virtual class nodes
    with features `class_features` `(K, F)`. Every real node `i` gets an
    edge to the virtual node of class `labels[i]` (and one back with
    `bidirectional=True`), of weight `mask[i]`: nodes outside the mask are
    not linked (weight 0), which keeps the edge count static.

    Returns:
        `(features (N+K, F), edge_index (2, E+N or E+2N), edge_weight)`.
    """
    num_nodes = ops.shape(node_features)[0]
    num_classes = class_features.shape[0]
    features = ops.concatenate(
        [node_features, ops.cast(class_features, node_features.dtype)], axis=0
    )
    real = ops.arange(num_nodes, dtype="int32")
    safe = ops.clip(ops.cast(labels, "int32"), 0, num_classes - 1)
    virtual = safe + ops.cast(num_nodes, "int32")
    weight = ops.cast(mask, "float32")
    base_weight = edge_weights_or_ones(edge_index, edge_weight)
    edge_index = ops.cast(edge_index, "int32")
    if bidirectional:
        extra_index = ops.stack(
            [ops.concatenate([real, virtual]), ops.concatenate([virtual, real])]
        )
        extra_weight = ops.concatenate([weight, weight])
    else:
        extra_index = ops.stack([real, virtual])
        extra_weight = weight
    return (
        features,
        ops.concatenate([edge_index, extra_index], axis=1),
        ops.concatenate([base_weight, extra_weight]),
    )


def cyclic_wrong_labels(labels, first, num_classes, count):
    """`count` wrong labels per node, all distinct: the `m`-th is the
    `m`-th wrong class after `first` (cyclically over the `K - 1` classes
    other than `labels`). `first` must differ from `labels`; `count =
    K - 1` gives every wrong class exactly once.

    Returns:
        A list of `count` int32 tensors shaped like `labels`.
    """
    labels = ops.cast(labels, "int32")
    offset = ops.mod(ops.cast(first, "int32") - labels, num_classes) - 1  # in [0, K-2]
    return [
        ops.mod(labels + 1 + ops.mod(offset + m, num_classes - 1), num_classes)
        for m in range(int(count))
    ]


# ---------------------------------------------------------------------- #
# Losses and sampling.
# ---------------------------------------------------------------------- #
def masked_mean(values, mask):
    """`sum(mask * values) / sum(mask)`: the mean over the masked rows (the
    reference averages over the training nodes only); 0 for an empty
    mask."""
    mask = ops.cast(ops.reshape(mask, (-1,)), values.dtype)
    total = ops.sum(values * mask)
    return total / ops.maximum(ops.sum(mask), 1.0)


def ff_logits(activity, threshold):
    """The reference's FF logit of each row: `sum(h^2) - theta`."""
    return ops.sum(ops.square(full_precision(activity)), axis=-1) - threshold


def binary_cross_entropy_with_logits(logits, target):
    """Per-row `BCE(sigmoid(logits), target)`, numerically stable."""
    return ops.softplus(logits) - logits * target


def goodness_bce_loss(positive, negative, threshold, mask):
    """FF loss of the reference: `BCE(sum(h_pos^2) - theta, 1)` +
    `BCE(sum(h_neg^2) - theta, 0)`, each averaged over the masked rows."""
    pos = binary_cross_entropy_with_logits(ff_logits(positive, threshold), 1.0)
    neg = binary_cross_entropy_with_logits(ff_logits(negative, threshold), 0.0)
    return masked_mean(pos, mask) + masked_mean(neg, mask)


def sample_negative_edges(seed, num_nodes, num_edges):
    """`(2, num_edges)` uniformly drawn node pairs (the same on every
    backend for the same seed)."""
    pairs = portable_randint(seed, (2, num_edges), num_nodes)
    return ops.cast(pairs, "int32")


def edge_products(embeddings, edge_label_index):
    """`z_u * z_v` for each candidate edge `(u, v)`: `(P, D)`."""
    return ops.take(embeddings, edge_label_index[0], axis=0) * ops.take(
        embeddings, edge_label_index[1], axis=0
    )


def link_logits(products, rule, threshold):
    """Link logits of a layer: `sum(z_u z_v)` for SF ("forward learning"),
    `sum((z_u z_v)^2) - theta` for FF."""
    if rule == "sf":
        return ops.sum(full_precision(products), axis=-1)
    return ff_logits(products, threshold)


# ---------------------------------------------------------------------- #
# NumPy checks of graph inputs (eager, before training).
# ---------------------------------------------------------------------- #
def check_edge_index(edge_index, num_nodes, name="edge_index"):
    """Raises `ValueError` unless `edge_index` is an integer `(2, E)` array
    with entries in `[0, num_nodes)`."""
    edge_index = np.asarray(edge_index)
    if edge_index.dtype.kind not in "iu":
        raise ValueError(
            f"`{name}` must hold integer node indices. Received: dtype "
            f"{edge_index.dtype}. Expected int32, e.g. "
            f"`{name}.astype('int32')`."
        )
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(
            f"`{name}` must have shape (2, num_edges): row 0 the sources, "
            f"row 1 the targets. Received: shape {edge_index.shape}. If it "
            f"is (num_edges, 2), pass `{name}.T`."
        )
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise ValueError(
            f"`{name}` refers to nodes outside [0, {num_nodes}). Received: "
            f"indices from {edge_index.min()} to {edge_index.max()} for a "
            f"graph of {num_nodes} nodes. Check that the edges belong to "
            "these node features."
        )
