import keras
from keras import ops


class GraphConv(keras.layers.Layer):
    """Base of the message-passing layers `GCNConv`, `SAGEConv`, `GATConv`.

    Holds what they share, as Keras's `BaseConv` does for `Conv1D/2D/3D`:
    the `units`/`activation`/`use_bias`/initializer arguments, the input
    check, the bias, the call `propagate(project(node_features),
    edge_index, edge_weight)` and the shared part of `get_config`. A
    subclass builds its kernels in `build` (calling `node_feature_size`
    and `add_bias`) and implements `propagate`; `project` (the linear
    part, which graphs with the same node features can share) defaults to
    `x W` with the subclass's `kernel`.

    Args:
        units: int, output features per node.
        activation: activation of the output. Defaults to `None`.
        use_bias: bool. Defaults to `True`.
        kernel_initializer: initializer of the kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the bias. Defaults to `"zeros"`.
        **kwargs: passed to `keras.layers.Layer`.

    Returns:
        A layer mapping `(node_features (N, F), edge_index (2, E),
        edge_weight (E,) or None)` to `(N, units)`.

    Example:

    ```python
    from keras import ops
    from keras_local.layers.graph_conv import GraphConv
    from keras_local.rules import forward_gnn as graph

    class SumConv(GraphConv):  # h_i = act(sum_{j -> i} W x_j + b)
        def build(self, input_shape):
            self.kernel = self.add_weight(
                shape=(self.node_feature_size(input_shape), self.units),
                initializer=self.kernel_initializer, name="kernel")
            self.add_bias()

        def propagate(self, projected, edge_index, edge_weight=None):
            edge_index = ops.cast(edge_index, "int32")
            out = graph.propagate(ops.take(projected, edge_index[0], axis=0),
                                  edge_index[1], projected.shape[0])
            return self.finish(out)
    ```

    References:
        - Gilmer et al., "Neural Message Passing for Quantum Chemistry",
          ICML 2017.
    """

    def __init__(
        self, units, activation=None, use_bias=True,
        kernel_initializer="glorot_uniform", bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(
                f"`units` must be a positive int. Received: units={units!r}"
            )
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.bias = None

    def node_feature_size(self, input_shape):
        """`F` of node features shaped `(num_nodes, F)`; a clear error
        otherwise."""
        shape = tuple(input_shape)
        if len(shape) != 2 or shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} takes node features of shape "
                f"(num_nodes, features) with a known feature size. Received: "
                f"node features of shape {shape}."
            )
        return int(shape[-1])

    def add_bias(self):
        """Adds the `(units,)` bias when `use_bias`."""
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.units,), initializer=self.bias_initializer,
                name="bias",
            )

    def finish(self, aggregated):
        """Bias and activation applied to the aggregated messages."""
        if self.bias is not None:
            aggregated = aggregated + ops.cast(self.bias, aggregated.dtype)
        return self.activation(aggregated)

    def project(self, node_features):
        """`x W`, the layer's linear part (no bias), shape `(N, units)`, for
        a subclass with one `kernel` weight (others override it).

        Linear in `node_features`, so graphs that share node features (or
        differ in a few columns) can share it; `propagate` does the rest.
        """
        dtype = node_features.dtype
        # Keras's PyTorch `matmul` returns float32 for float64 operands.
        return ops.cast(ops.matmul(node_features, ops.cast(self.kernel, dtype)), dtype)

    def propagate(self, projected, edge_index, edge_weight=None):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `propagate(projected, "
            "edge_index, edge_weight=None)`."
        )

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
