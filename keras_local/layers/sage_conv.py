from keras import ops

from keras_local.api_export import keras_local_export
from keras_local.layers.graph_conv import GraphConv
from keras_local.rules import forward_gnn as graph


@keras_local_export
class SAGEConv(GraphConv):
    """GraphSAGE convolution with the mean aggregator.

    `h_i = act(W_n mean_{j -> i} x_j + b + W_s x_i)`, as PyTorch
    Geometric's `SAGEConv(aggr="mean")` (the bias sits on the neighbour
    branch). Edge weights make the mean a weighted mean
    `sum_j w_ji x_j / sum_j w_ji`; a node without incoming edges (or only
    weight-0 ones) aggregates zeros. Existing self loops count as
    neighbours; none are added.

    Args:
        units: int, output features per node.
        activation: activation of the output. Defaults to `None`.
        use_bias: bool. Defaults to `True`.
        kernel_initializer: initializer of `W_n` and `W_s`. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of `b`. Defaults to `"zeros"`.
        **kwargs: passed to `keras.layers.Layer`.

    Returns:
        A layer mapping `(node_features (N, F), edge_index (2, E),
        edge_weight (E,) or None)` to `(N, units)`.
        The call is `propagate(project(node_features), edge_index,
        edge_weight)`: `project` is the linear part, which graphs with
        the same node features can share.

    Example:

    ```python
    graph = keras_local.datasets.load_cora()
    layer = keras_local.layers.SAGEConv(16, activation="relu")
    h = layer(graph.x, graph.edge_index)  # (2708, 16)
    ```

    References:
        - Hamilton, Ying & Leskovec, "Inductive Representation Learning on
          Large Graphs", NeurIPS 2017.
    """

    def build(self, input_shape):
        features = self.node_feature_size(input_shape)
        self.neighbor_kernel = self.add_weight(
            shape=(features, self.units), initializer=self.kernel_initializer,
            name="neighbor_kernel",
        )
        self.self_kernel = self.add_weight(
            shape=(features, self.units), initializer=self.kernel_initializer,
            name="self_kernel",
        )
        self.add_bias()

    def project(self, node_features):
        """`[x W_s, x W_n]`, the layer's linear part (no bias), shape
        `(N, 2 * units)`.

        Linear in `node_features`, so graphs that share node features (or
        differ in a few columns) can share it; `propagate` does the rest.
        Projecting before the mean (`mean(x) W_n = mean(x W_n)`) also keeps
        the messages `units` wide instead of `features` wide.
        """
        dtype = node_features.dtype
        kernel = ops.concatenate(
            [ops.cast(self.self_kernel, dtype), ops.cast(self.neighbor_kernel, dtype)], axis=-1
        )
        # Keras's PyTorch `matmul` returns float32 for float64 operands.
        return ops.cast(ops.matmul(node_features, kernel), dtype)

    def propagate(self, projected, edge_index, edge_weight=None):
        """The layer's output from `project(node_features)`: the weighted
        mean of the neighbours' `x W_n`, plus `x W_s`, bias, activation."""
        num_nodes = projected.shape[0]
        own, neighbor = projected[:, : self.units], projected[:, self.units:]
        edge_index = ops.cast(edge_index, "int32")
        weight = graph.edge_weights_or_ones(edge_index, edge_weight, projected.dtype)
        source, target = edge_index[0], edge_index[1]
        messages = ops.take(neighbor, source, axis=0) * ops.expand_dims(weight, -1)
        total = graph.propagate(messages, target, num_nodes)
        count = graph.propagate(weight, target, num_nodes)
        mean = total / ops.expand_dims(ops.maximum(count, 1e-12), -1)
        mean = ops.where(ops.expand_dims(count > 0, -1), mean, 0.0)
        return self.finish(mean + own)
