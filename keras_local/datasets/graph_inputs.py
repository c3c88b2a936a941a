"""Full-graph inputs for `fit`, `evaluate` and `predict`, their checks, and
the adapter from a `tensorflow_gnn.GraphTensor`.

A graph is one "sample": every array gets a leading axis of size 1, so
Keras's ordinary data adapters (NumPy arrays, `batch_size=1`) feed it on the
JAX, TensorFlow and PyTorch backends:

```python
graph = keras_local.datasets.load_cora()
x, y, train_mask = keras_local.datasets.graph_batch(
    graph.x, graph.edge_index, graph.y, mask=graph.train_index)
model = keras_local.GNNModel(num_classes=graph.num_classes, conv="gcn")
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, sample_weight=train_mask, batch_size=1, epochs=100)
```

`x` is a dict: `"node_features"` `(1, N, F)` float32, `"edge_index"`
`(1, 2, E)` int32, and optionally `"edge_weight"` `(1, E)` float32 and
`"known_labels"` `(1, N)` int32 (the labels a transductive model may see
at prediction time, `-1` where unknown) and `"query_mask"` `(1, N)` float32
(the unlabelled nodes being evaluated: the Forward-Forward rules give the
candidate class to these only). `y` is `(1, N)` int32 and the masks
`(1, N)` float32, used as `sample_weight`.
"""

import numpy as np

from keras_local.rules.forward_gnn import check_edge_index

NODE_FEATURES = "node_features"
EDGE_INDEX = "edge_index"
EDGE_WEIGHT = "edge_weight"
KNOWN_LABELS = "known_labels"
QUERY_MASK = "query_mask"
EDGE_LABEL_INDEX = "edge_label_index"
KEYS = (NODE_FEATURES, EDGE_INDEX, EDGE_WEIGHT, KNOWN_LABELS, QUERY_MASK, EDGE_LABEL_INDEX)


def graph_batch(
    node_features, edge_index, labels=None, mask=None, edge_weight=None,
    known_labels=None, known_mask=None, query_mask=None,
):
    """Packs one graph as `(x, y, sample_weight)` with a batch axis of 1.

    Args:
        node_features: array `(N, F)`.
        edge_index: integer array `(2, E)`, sources then targets.
        labels: integer array `(N,)` or `None`; `-1` (unlabelled) is
            allowed outside `mask` and stored as 0 there.
        mask: `(N,)` boolean/0-1 array, or an integer index array of the
            nodes that count; `None` means all labelled nodes.
        edge_weight: `(E,)` non-negative weights or `None`.
        known_labels: `(N,)` labels visible to the model when predicting
            (`-1` = unknown). Defaults to `None` (none visible).
        known_mask: mask or index array of the nodes whose `labels` are
            visible (builds `known_labels`). Defaults to `None`.
        query_mask: mask or index array of the nodes being evaluated. The
            Forward-Forward rules of `ForwardGNNModel` score a node by
            running the graph once per candidate class; only these nodes
            get the candidate (as the reference evaluates), the other
            unlabelled nodes stay as in training. Defaults to `None` (every
            unlabelled node gets it).

    Returns:
        `(x, y, sample_weight)`; `y` and `sample_weight` are `None` when
        `labels` is.
    """
    node_features = np.asarray(node_features, dtype="float32")
    num_nodes = node_features.shape[0] if node_features.ndim else 0
    if node_features.ndim != 2:
        raise ValueError(
            "`node_features` must have shape (num_nodes, features). "
            f"Received: shape {node_features.shape}."
        )
    check_edge_index(edge_index, num_nodes)
    x = {
        NODE_FEATURES: node_features[None],
        EDGE_INDEX: np.asarray(edge_index).astype("int32")[None],
    }
    if edge_weight is not None:
        x[EDGE_WEIGHT] = np.asarray(edge_weight, dtype="float32").reshape(1, -1)
    y = sample_weight = None
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != num_nodes:
            raise ValueError(
                "Node features and labels have different lengths. Received: "
                f"{num_nodes} nodes and {len(labels)} labels. Expected one "
                "label per node (-1 for unlabelled nodes)."
            )
        weight = node_mask(mask, num_nodes, default=labels >= 0)
        if np.any(labels[weight > 0] < 0):
            raise ValueError(
                "The mask selects unlabelled nodes (label -1). Received: "
                f"{int(np.sum(labels[weight > 0] < 0))} masked nodes without "
                "a label. Remove them from the mask."
            )
        y = np.where(labels >= 0, labels, 0).astype("int32")[None]
        sample_weight = weight[None]
    if known_mask is not None:
        if labels is None:
            raise ValueError("`known_mask` selects among `labels`; pass `labels` too.")
        visible = node_mask(known_mask, num_nodes)
        known_labels = np.where((visible > 0) & (labels >= 0), labels, -1)
    if known_labels is not None:
        x[KNOWN_LABELS] = np.asarray(known_labels).astype("int32").reshape(1, -1)
    if query_mask is not None:
        x[QUERY_MASK] = node_mask(query_mask, num_nodes)[None]
    validate_graph_inputs(x, y, sample_weight)
    return x, y, sample_weight


def node_mask(mask, num_nodes, default=None):
    """A float32 0/1 vector `(N,)` from a boolean mask or an index array."""
    if mask is None:
        if default is None:
            return np.ones((num_nodes,), dtype="float32")
        return np.asarray(default, dtype="float32")
    mask = np.asarray(mask)
    if mask.dtype == bool or (mask.shape == (num_nodes,) and mask.dtype.kind == "f"):
        if mask.shape != (num_nodes,):
            raise ValueError(
                f"A node mask must have shape ({num_nodes},). Received: "
                f"shape {mask.shape}."
            )
        return mask.astype("float32")
    index = mask.reshape(-1).astype("int64")
    if index.size and (index.min() < 0 or index.max() >= num_nodes):
        raise ValueError(
            f"Node indices must lie in [0, {num_nodes}). Received: indices "
            f"from {index.min()} to {index.max()}."
        )
    out = np.zeros((num_nodes,), dtype="float32")
    out[index] = 1.0
    return out


def validate_graph_inputs(x, y=None, sample_weight=None, num_classes=None):
    """Checks a full-graph batch; raises `ValueError` on bad input.

    Returns:
        `(num_nodes, num_edges)`.
    """
    if not isinstance(x, dict) or NODE_FEATURES not in x or EDGE_INDEX not in x:
        raise ValueError(
            "Graph models take a dict with 'node_features' (1, N, F) and "
            "'edge_index' (1, 2, E). Received: "
            f"{type(x).__name__}"
            + (f" with keys {sorted(x)}" if isinstance(x, dict) else "")
            + ". Build it with `keras_local.datasets.graph_inputs."
            "graph_batch(features, edge_index, ...)`."
        )
    unknown = set(x) - set(KEYS)
    if unknown:
        raise ValueError(
            f"Unknown graph input keys {sorted(unknown)}. Expected some of {KEYS}."
        )
    features = np.asarray(x[NODE_FEATURES])
    if features.ndim != 3 or features.shape[0] != 1:
        raise ValueError(
            "'node_features' must have shape (1, num_nodes, features): one "
            f"full graph per batch. Received: shape {features.shape}. Use "
            "`graph_batch(...)`, which adds the leading axis."
        )
    num_nodes = features.shape[1]
    edge_index = np.asarray(x[EDGE_INDEX])
    if edge_index.ndim != 3 or edge_index.shape[0] != 1:
        raise ValueError(
            "'edge_index' must have shape (1, 2, num_edges). Received: shape "
            f"{edge_index.shape}. Use `graph_batch(...)`."
        )
    check_edge_index(edge_index[0], num_nodes)
    num_edges = edge_index.shape[2]
    if EDGE_WEIGHT in x:
        weight = np.asarray(x[EDGE_WEIGHT])
        if weight.shape != (1, num_edges):
            raise ValueError(
                f"'edge_weight' must have shape (1, {num_edges}), one weight "
                f"per edge. Received: shape {weight.shape}."
            )
        if not np.all(np.isfinite(weight)) or np.any(weight < 0):
            raise ValueError(
                "'edge_weight' must be finite and non-negative. Received: "
                f"weights from {weight.min()} to {weight.max()}."
            )
    if KNOWN_LABELS in x:
        known = np.asarray(x[KNOWN_LABELS])
        if known.shape != (1, num_nodes) or known.dtype.kind not in "iu":
            raise ValueError(
                f"'known_labels' must be integers of shape (1, {num_nodes}), "
                f"-1 where unknown. Received: shape {known.shape}, dtype "
                f"{known.dtype}."
            )
        if num_classes is not None and known.size and known.max() >= num_classes:
            raise ValueError(
                f"'known_labels' must lie in [-1, {num_classes}). Received: "
                f"max {known.max()}."
            )
    if QUERY_MASK in x:
        query = np.asarray(x[QUERY_MASK])
        if query.shape != (1, num_nodes) or not np.all((query == 0) | (query == 1)):
            raise ValueError(
                f"'query_mask' must be 0/1 of shape (1, {num_nodes}), one entry "
                f"per node. Received: shape {query.shape}"
                + (f", values {np.unique(query)[:5]}" if query.size else "")
                + ". Build it with `graph_batch(..., query_mask=...)`."
            )
    if EDGE_LABEL_INDEX in x:
        candidates = np.asarray(x[EDGE_LABEL_INDEX])
        if candidates.ndim != 3 or candidates.shape[0] != 1:
            raise ValueError(
                "'edge_label_index' must have shape (1, 2, num_candidates). "
                f"Received: shape {candidates.shape}."
            )
        check_edge_index(candidates[0], num_nodes, name="edge_label_index")
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 1 and y.shape[0] == num_nodes:
            y = y[None]
        if y.ndim != 2 or y.shape[0] != 1 or y.shape[1] != num_nodes:
            raise ValueError(
                "Node features and labels have different lengths. Received: "
                f"{num_nodes} nodes and labels of shape {y.shape}. Expected "
                f"labels of shape (1, {num_nodes})."
            )
        if y.dtype.kind not in "iu":
            raise ValueError(
                f"Node labels must be integers. Received: dtype {y.dtype}."
            )
        if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"Node labels must lie in [0, {num_classes}). Received: "
                f"labels from {y.min()} to {y.max()}."
            )
    if sample_weight is not None:
        weight = np.asarray(sample_weight)
        if weight.size != num_nodes:
            raise ValueError(
                f"The node mask (sample_weight) must have {num_nodes} entries, "
                f"one per node. Received: shape {weight.shape}."
            )
    return num_nodes, num_edges


def from_graph_tensor(
    graph, node_set, edge_set, feature="hidden_state", label=None,
    edge_weight=None, mask=None, known_mask=None,
):
    """`graph_batch(...)` of one node set and edge set of a
    `tensorflow_gnn.GraphTensor` (read out as NumPy arrays, so it works on
    every backend; needs `tensorflow-gnn` and `tf-keras` installed).

    Returns:
        `(x, y, sample_weight)` as `graph_batch` (`y`, `sample_weight` are
        `None` without `label`).
    """
    from keras_local.backend.graph_tensor import graph_tensor_to_arrays

    arrays = graph_tensor_to_arrays(
        graph, node_set, edge_set, feature=feature, label=label,
        edge_weight=edge_weight,
    )
    return graph_batch(
        arrays["node_features"], arrays["edge_index"], arrays.get("labels"),
        mask=mask, edge_weight=arrays.get("edge_weight"),
        known_mask=known_mask,
    )


def dataset_batches(dataset):
    """One full-graph batch per split of a `GraphDataset`.

    Every split's batch holds the whole graph; its `sample_weight` selects
    that split's nodes. The training labels are visible (`known_labels`)
    in every split, and in "val" and "test" that split's nodes are the
    `query_mask` (the nodes whose labels a label-appending rule must not
    see).

    Args:
        dataset: a `keras_local.datasets.GraphDataset`.

    Returns:
        `{"train": (x, y, sample_weight), "val": ..., "test": ...}`, each
        as `graph_batch` returns it.

    Example:

    ```python
    graph = keras_local.datasets.load_cora()
    batches = keras_local.datasets.dataset_batches(graph)
    model = keras_local.GNNModel(num_classes=graph.num_classes, conv="gcn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=["accuracy"])
    x, y, sample_weight = batches["train"]
    model.fit(x, y, sample_weight=sample_weight, validation_data=batches["val"],
              batch_size=1, epochs=100)
    ```
    """
    x_np = np.asarray(dataset.x.todense() if hasattr(dataset.x, "todense") else dataset.x)
    out = {}
    for name, index in (("train", dataset.train_index), ("val", dataset.val_index),
                        ("test", dataset.test_index)):
        out[name] = graph_batch(
            x_np, dataset.edge_index, dataset.y, mask=index,
            known_mask=dataset.train_index,
            query_mask=None if name == "train" else index,
        )
    return out


def link_split(edge_index, num_nodes, val_fraction=0.05, test_fraction=0.1, seed=0):
    """Splits an undirected graph's edges for link prediction.

    Each undirected pair `{u, v}` (self loops dropped) goes to train,
    validation or test at random (fixed `seed`); the message-passing graph
    is the training pairs in both directions. Validation and test get as
    many negative pairs as positive ones, drawn uniformly among the node
    pairs that are not edges.

    Args:
        edge_index: int `(2, num_edges)`, either or both directions of each
            edge.
        num_nodes: int, the number of nodes.
        val_fraction, test_fraction: shares of the undirected pairs held
            out for validation and test, each in [0, 1), summing to less
            than 1.
        seed: int, the seed of the split and of the negative pairs.

    Returns:
        A dict with `"edge_index"` (2, 2 * train pairs) and, for `"train"`,
        `"val"`, `"test"`, `(edge_label_index (2, P), edge_label (P,))`;
        the train split holds positives only (the model samples its
        negatives).

    Example:

    ```python
    graph = keras_local.datasets.load_cora()
    split = keras_local.datasets.link_split(graph.edge_index, graph.num_nodes)
    x, y = keras_local.datasets.link_batch(graph.x, split["edge_index"], *split["val"])
    ```
    """
    if not (
        0 <= val_fraction < 1 and 0 <= test_fraction < 1
        and val_fraction + test_fraction < 1
    ):
        raise ValueError(
            "`val_fraction` and `test_fraction` must each be in [0, 1) and "
            "sum to less than 1, so some edges are left for training. "
            f"Received: val_fraction={val_fraction}, "
            f"test_fraction={test_fraction}."
        )
    edge_index = np.asarray(edge_index)
    check_edge_index(edge_index, num_nodes)
    low = np.minimum(edge_index[0], edge_index[1]).astype("int64")
    high = np.maximum(edge_index[0], edge_index[1]).astype("int64")
    keep = low != high
    pairs = np.unique(low[keep] * num_nodes + high[keep])
    rng = np.random.default_rng(seed)
    pairs = rng.permutation(pairs)
    n_val = int(round(val_fraction * len(pairs)))
    n_test = int(round(test_fraction * len(pairs)))
    val, test, train = pairs[:n_val], pairs[n_val:n_val + n_test], pairs[n_val + n_test:]
    existing = set(pairs.tolist())
    non_edges = num_nodes * (num_nodes - 1) // 2 - len(pairs)
    if non_edges < n_val + n_test:
        raise ValueError(
            "The graph is too dense to draw as many negative (non-edge) "
            "pairs as held-out edges. Received: "
            f"{non_edges} node pairs that are not edges for "
            f"{n_val + n_test} held-out edges. Hold out fewer edges."
        )

    def negatives(count):
        out = []
        while len(out) < count:
            u, v = rng.integers(0, num_nodes, size=2)
            a, b = min(u, v), max(u, v)
            if a != b and a * num_nodes + b not in existing:
                out.append((a, b))
                existing.add(a * num_nodes + b)
        return np.asarray(out, dtype="int64").reshape(-1, 2).T

    def decode(codes):
        return np.stack([codes // num_nodes, codes % num_nodes])

    split = {}
    train_pairs = decode(train)
    split["edge_index"] = np.concatenate(
        [train_pairs, train_pairs[::-1]], axis=1
    ).astype("int32")
    split["train"] = (train_pairs.astype("int32"), np.ones(train_pairs.shape[1], "float32"))
    for name, codes in (("val", val), ("test", test)):
        positive = decode(codes)
        negative = negatives(positive.shape[1])
        split[name] = (
            np.concatenate([positive, negative], axis=1).astype("int32"),
            np.concatenate([np.ones(positive.shape[1]), np.zeros(negative.shape[1])]).astype("float32"),
        )
    return split


def link_batch(node_features, edge_index, edge_label_index, edge_label=None):
    """`(x, y)` for link prediction, with a batch axis of 1.

    Args:
        node_features: float `(num_nodes, num_features)`.
        edge_index: int `(2, num_edges)`, the message-passing graph.
        edge_label_index: int `(2, P)`, the candidate node pairs to score.
        edge_label: optional `(P,)` 0/1 labels of the candidates.

    Returns:
        `(x, y)`: `x` the dict `graph_batch` builds plus the candidates
        under `"edge_label_index"`; `y` the labels as float32 `(1, P)`, or
        `None` without `edge_label`.

    Example:

    ```python
    graph = keras_local.datasets.load_cora()
    split = keras_local.datasets.link_split(graph.edge_index, graph.num_nodes)
    x, y = keras_local.datasets.link_batch(graph.x, split["edge_index"], *split["test"])
    ```
    """
    x, _, _ = graph_batch(node_features, edge_index)
    num_nodes = x[NODE_FEATURES].shape[1]
    check_edge_index(edge_label_index, num_nodes, name="edge_label_index")
    x[EDGE_LABEL_INDEX] = np.asarray(edge_label_index).astype("int32")[None]
    y = None if edge_label is None else np.asarray(edge_label, "float32").reshape(1, -1)
    return x, y
