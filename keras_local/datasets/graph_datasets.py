"""Loaders of the citation and co-purchase graphs."""

import numpy as np

from keras_local.datasets.data_path import find_data_file
from keras_local.datasets.graph_dataset import GraphDataset


def stratified_split(y, fractions=(0.6, 0.2, 0.2), seed=0):
    """Per-class random split of the labeled nodes.

    Args:
        y: int labels `(num_nodes,)`; nodes labeled `-1` are left out.
        fractions: `(train, validation, test)` shares of each class, each
            in [0, 1], summing to at most 1. When they sum to 1 the test
            part takes every node the other two leave (no node is lost to
            rounding); otherwise the nodes beyond the three parts are not
            used.
        seed: int, the seed of the per-class shuffles.

    Returns:
        `(train_index, val_index, test_index)`: sorted int64 node indices.

    Example:

    ```python
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, -1])
    train, val, test = keras_local.datasets.stratified_split(y, (0.5, 0.25, 0.25))
    ```
    """
    received = fractions
    try:
        fractions = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        fractions = None
    if (
        fractions is None
        or len(fractions) != 3
        or min(fractions) < 0
        or sum(fractions) > 1 + 1e-9
    ):
        raise ValueError(
            "`split` (or `fractions`) must be three shares (train, "
            "validation, test), each in [0, 1], summing to at most 1. "
            f"Received: {received!r}."
        )
    whole = abs(sum(fractions) - 1) <= 1e-9
    rng = np.random.default_rng(seed)
    parts = [[], [], []]
    for label in np.unique(y[y >= 0]):
        nodes = rng.permutation(np.flatnonzero(y == label))
        n_train = int(round(fractions[0] * len(nodes)))
        n_val = int(round(fractions[1] * len(nodes)))
        n_test = len(nodes) if whole else int(round(fractions[2] * len(nodes)))
        parts[0].append(nodes[:n_train])
        parts[1].append(nodes[n_train : n_train + n_val])
        parts[2].append(nodes[n_train + n_val : n_train + n_val + n_test])
    return tuple(np.sort(np.concatenate(p)).astype("int64") for p in parts)


def _load(filename, path, sparse, split=None, seed=0):
    import scipy.sparse as sp

    with np.load(find_data_file(filename, path), allow_pickle=False) as d:
        x = sp.csr_matrix(
            (d["x_data"], d["x_indices"], d["x_indptr"]), shape=tuple(d["x_shape"])
        )
        y = d["y"].astype("int32")
        edge_index = d["edge_index"].astype("int32")
        if "train_idx" in d.files and split is None:
            splits = tuple(d[k].astype("int64") for k in ("train_idx", "val_idx", "test_idx"))
        else:
            splits = stratified_split(y, split or (0.6, 0.2, 0.2), seed)
    if not sparse:
        x = np.asarray(x.todense(), dtype="float32")
    num_classes = int(y.max()) + 1
    return GraphDataset(x, y, edge_index, *splits, num_classes=num_classes)


def load_cora(path=None, sparse=False):
    """Cora (2708 nodes, 7 classes) with the Planetoid public split
    (140/500/1000).

    Args:
        path: optional file or folder holding `cora_planetoid.npz`. Defaults to
            `None` (search `$KERAS_LOCAL_DATA_DIR`, then the Keras cache).
        sparse: bool, whether `x` is a SciPy CSR matrix rather than a dense
            float32 array.

    Returns:
        A `keras_local.datasets.GraphDataset`.

    Example:

    ```python
    graph = keras_local.datasets.load_cora()
    batches = keras_local.datasets.dataset_batches(graph)
    x, y, sample_weight = batches["train"]
    ```

    References:
        Yang, Cohen & Salakhutdinov, "Revisiting Semi-Supervised Learning
        with Graph Embeddings", ICML 2016 (the Planetoid split).
    """
    return _load("cora_planetoid.npz", path, sparse)


def load_citeseer(path=None, sparse=False):
    """CiteSeer (3327 nodes, 6 classes; 15 isolated nodes have label -1)
    with the Planetoid public split (120/500/1000).

    Args:
        path: optional file or folder holding `citeseer_planetoid.npz`. Defaults to
            `None` (search `$KERAS_LOCAL_DATA_DIR`, then the Keras cache).
        sparse: bool, whether `x` is a SciPy CSR matrix rather than a dense
            float32 array.

    Returns:
        A `keras_local.datasets.GraphDataset`.

    Example:

    ```python
    graph = keras_local.datasets.load_citeseer()
    print(graph.num_nodes, graph.num_classes)  # 3327 6
    ```

    References:
        Yang, Cohen & Salakhutdinov, "Revisiting Semi-Supervised Learning
        with Graph Embeddings", ICML 2016 (the Planetoid split).
    """
    return _load("citeseer_planetoid.npz", path, sparse)


def load_amazon_photo(path=None, sparse=False, split=(0.6, 0.2, 0.2), seed=0):
    """Amazon Photo (7650 nodes, 8 classes); stratified random split.

    Args:
        path: optional file or folder holding `amazon_photo.npz`. Defaults to
            `None` (search `$KERAS_LOCAL_DATA_DIR`, then the Keras cache).
        sparse: bool, whether `x` is a SciPy CSR matrix rather than a dense
            float32 array.
        split: `(train, validation, test)` shares of each class; see
            `stratified_split`.
        seed: int, the seed of the split.

    Returns:
        A `keras_local.datasets.GraphDataset`.

    Example:

    ```python
    graph = keras_local.datasets.load_amazon_photo(split=(0.1, 0.1, 0.8), seed=1)
    ```

    References:
        Shchur et al., "Pitfalls of Graph Neural Network Evaluation",
        2018 (the data set).
    """
    return _load("amazon_photo.npz", path, sparse, split, seed)


def load_amazon_computers(path=None, sparse=False, split=(0.6, 0.2, 0.2), seed=0):
    """Amazon Computers (13752 nodes, 10 classes); stratified random split.

    Args:
        path: optional file or folder holding `amazon_computers.npz`. Defaults to
            `None` (search `$KERAS_LOCAL_DATA_DIR`, then the Keras cache).
        sparse: bool, whether `x` is a SciPy CSR matrix rather than a dense
            float32 array.
        split: `(train, validation, test)` shares of each class; see
            `stratified_split`.
        seed: int, the seed of the split.

    Returns:
        A `keras_local.datasets.GraphDataset`.

    Example:

    ```python
    graph = keras_local.datasets.load_amazon_computers()
    batches = keras_local.datasets.dataset_batches(graph)
    ```

    References:
        Shchur et al., "Pitfalls of Graph Neural Network Evaluation",
        2018 (the data set).
    """
    return _load("amazon_computers.npz", path, sparse, split, seed)


def load_coauthor_cs(path=None, sparse=True, split=(0.6, 0.2, 0.2), seed=0):
    """Coauthor CS (18333 nodes, 6805 features, 15 classes); stratified
    random split. Sparse by default (dense features take 500 MB).

    Args:
        path: optional file or folder holding `coauthor_cs.npz`. Defaults to
            `None` (search `$KERAS_LOCAL_DATA_DIR`, then the Keras cache).
        sparse: bool, whether `x` is a SciPy CSR matrix rather than a dense
            float32 array.
        split: `(train, validation, test)` shares of each class; see
            `stratified_split`.
        seed: int, the seed of the split.

    Returns:
        A `keras_local.datasets.GraphDataset`.

    Example:

    ```python
    graph = keras_local.datasets.load_coauthor_cs()  # x: a SciPy CSR matrix
    ```

    References:
        Shchur et al., "Pitfalls of Graph Neural Network Evaluation",
        2018 (the data set).
    """
    return _load("coauthor_cs.npz", path, sparse, split, seed)
