"""Graph data sets as numpy arrays (transductive node classification)."""




class GraphDataset:
    """A graph with node features, labels, edges and split indices.

    Attributes:
        x: float32 node features `(num_nodes, num_features)` (a SciPy CSR
            matrix when loaded with `sparse=True`).
        y: int32 labels `(num_nodes,)`; `-1` marks unlabeled nodes.
        edge_index: int32 `(2, num_edges)`, both directions of every edge,
            no self loops.
        train_index, val_index, test_index: int64 node indices.
        num_classes: int.

    Unpacks as `x, y, edge_index, (train, val, test) = dataset`; the
    loaders in `keras_local.datasets` return it.

    Example:

    ```python
    graph = keras_local.datasets.load_cora()
    x, y, edge_index, (train, val, test) = graph
    print(graph)  # GraphDataset(nodes=2708, features=1433, ...)
    ```
    """

    def __init__(self, x, y, edge_index, train_index, val_index, test_index, num_classes):
        self.x = x
        self.y = y
        self.edge_index = edge_index
        self.train_index = train_index
        self.val_index = val_index
        self.test_index = test_index
        self.num_classes = num_classes

    @property
    def num_nodes(self):
        return self.x.shape[0]

    def __iter__(self):
        # Unpacks as `x, y, edge_index, (train, val, test) = dataset`.
        return iter(
            (self.x, self.y, self.edge_index, (self.train_index, self.val_index, self.test_index))
        )

    def __repr__(self):
        return (
            f"GraphDataset(nodes={self.num_nodes}, features={self.x.shape[1]}, "
            f"edges={self.edge_index.shape[1]}, classes={self.num_classes}, "
            f"train/val/test={len(self.train_index)}/{len(self.val_index)}/"
            f"{len(self.test_index)})"
        )
