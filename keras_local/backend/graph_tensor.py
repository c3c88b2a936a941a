"""Reading graphs out of `tensorflow_gnn.GraphTensor`s (and building small
ones), for every Keras backend.

TF-GNN 1.x imports only with Keras 2 (`tf-keras`) behind
`TF_USE_LEGACY_KERAS=1`, and its layers are Keras 2 layers that cannot sit
in a Keras 3 model. keras_local uses it for graph *data* only: the
GraphTensor, its schema and I/O. Everything here imports TensorFlow and
TF-GNN lazily, inside the functions, and returns NumPy arrays, so the
result feeds models on the JAX, TensorFlow and PyTorch backends alike.
"""

import os

import numpy as np


def import_tensorflow_gnn():
    """Imports `tensorflow_gnn`, setting `TF_USE_LEGACY_KERAS=1` first.

    Raises:
        ImportError: with the install command when TF-GNN is missing.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    try:
        import tensorflow_gnn as tfgnn
    except ImportError as error:
        raise ImportError(
            "Reading a GraphTensor needs `tensorflow-gnn` and `tf-keras`. "
            "Install them with `pip install tensorflow-gnn tf-keras` (with "
            "the pinned TensorFlow kept: `pip install --no-deps "
            "tensorflow-gnn==1.0.3 tf-keras==<your TF version>`). Received: "
            f"{error}"
        ) from error
    return tfgnn


def graph_tensor_to_arrays(
    graph, node_set, edge_set, feature="hidden_state", label=None,
    edge_weight=None,
):
    """NumPy arrays of one node set and one edge set of a GraphTensor.

    Args:
        graph: a scalar `tfgnn.GraphTensor` (all components are merged).
        node_set: str, name of the node set.
        edge_set: str, name of an edge set whose source and target are both
            `node_set`.
        feature: str, the node feature holding the input vectors.
        label: str or `None`, a node feature holding integer labels.
        edge_weight: str or `None`, an edge feature of scalar weights.

    Returns:
        A dict with `node_features` float32 `(N, F)`, `edge_index` int32
        `(2, E)`, and `labels` int32 `(N,)`, `edge_weight` float32 `(E,)`
        when asked for.
    """
    import_tensorflow_gnn()
    if graph.rank != 0:
        raise ValueError(
            "Expected a scalar GraphTensor (rank 0). Received: rank "
            f"{graph.rank}. Merge a batch first with "
            "`graph.merge_batch_to_components()`."
        )
    if node_set not in graph.node_sets:
        raise ValueError(
            f"No node set {node_set!r} in the GraphTensor. Received: node "
            f"sets {sorted(graph.node_sets)}."
        )
    if edge_set not in graph.edge_sets:
        raise ValueError(
            f"No edge set {edge_set!r} in the GraphTensor. Received: edge "
            f"sets {sorted(graph.edge_sets)}."
        )
    nodes, edges = graph.node_sets[node_set], graph.edge_sets[edge_set]
    adjacency = edges.adjacency
    if adjacency.source_name != node_set or adjacency.target_name != node_set:
        raise ValueError(
            f"Edge set {edge_set!r} links {adjacency.source_name!r} -> "
            f"{adjacency.target_name!r}. Expected edges within the node set "
            f"{node_set!r} (a homogeneous graph)."
        )
    for name, container in ((feature, nodes), (label, nodes), (edge_weight, edges)):
        if name is not None and name not in container.features:
            raise ValueError(
                f"No feature {name!r}. Received: features "
                f"{sorted(container.features)}."
            )
    out = {
        "node_features": np.asarray(nodes[feature], dtype="float32"),
        "edge_index": np.stack(
            [np.asarray(adjacency.source), np.asarray(adjacency.target)]
        ).astype("int32"),
    }
    if label is not None:
        out["labels"] = np.asarray(nodes[label]).reshape(-1).astype("int32")
    if edge_weight is not None:
        out["edge_weight"] = np.asarray(edges[edge_weight]).reshape(-1).astype("float32")
    return out


def arrays_to_graph_tensor(
    node_features, edge_index, node_set="nodes", edge_set="edges",
    feature="hidden_state", labels=None, label="label",
):
    """A one-component `tfgnn.GraphTensor` of a homogeneous graph."""
    tfgnn = import_tensorflow_gnn()
    import tensorflow as tf

    node_features = np.asarray(node_features, dtype="float32")
    edge_index = np.asarray(edge_index)
    features = {feature: tf.constant(node_features)}
    if labels is not None:
        features[label] = tf.constant(np.asarray(labels, dtype="int32"))
    return tfgnn.GraphTensor.from_pieces(
        node_sets={
            node_set: tfgnn.NodeSet.from_fields(
                sizes=tf.constant([node_features.shape[0]]), features=features
            )
        },
        edge_sets={
            edge_set: tfgnn.EdgeSet.from_fields(
                sizes=tf.constant([edge_index.shape[1]]),
                adjacency=tfgnn.Adjacency.from_indices(
                    source=(node_set, tf.constant(edge_index[0], dtype=tf.int32)),
                    target=(node_set, tf.constant(edge_index[1], dtype=tf.int32)),
                ),
            )
        },
    )
