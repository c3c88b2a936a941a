import keras
from keras import ops

from keras_local.api_export import keras_local_export
from keras_local.layers.gcn_conv import _check_units
from keras_local.layers.gcn_conv import _feature_dim
from keras_local.rules import forward_gnn as graph


@keras_local_export
class SAGEConv(keras.layers.Layer):
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
    layer = SAGEConv(16, activation="relu")
    h = layer(features, edge_index)  # (num_nodes, 16)
    ```

    References:
        - Hamilton, Ying & Leskovec, "Inductive Representation Learning on
          Large Graphs", NeurIPS 2017.
    """

    def __init__(
        self, units, activation=None, use_bias=True,
        kernel_initializer="glorot_uniform", bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _check_units(units)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        features = _feature_dim(self, input_shape)
        self.neighbor_kernel = self.add_weight(
            shape=(features, self.units), initializer=self.kernel_initializer,
            name="neighbor_kernel",
        )
        self.self_kernel = self.add_weight(
            shape=(features, self.units), initializer=self.kernel_initializer,
            name="self_kernel",
        )
        self.bias = (
            self.add_weight(shape=(self.units,), initializer=self.bias_initializer, name="bias")
            if self.use_bias else None
        )

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
        return ops.matmul(node_features, kernel)

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
        out = mean + own
        if self.bias is not None:
            out = out + ops.cast(self.bias, out.dtype)
        return self.activation(out)

    def call(self, node_features, edge_index, edge_weight=None):
        return self.propagate(self.project(node_features), edge_index, edge_weight)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
