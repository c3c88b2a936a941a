from keras import ops

from keras_local.api_export import keras_local_export
from keras_local.layers.graph_conv import GraphConv
from keras_local.rules import forward_gnn as graph


@keras_local_export
class GCNConv(GraphConv):
    """Graph convolution of Kipf & Welling with symmetric normalisation.

    `h_i = act(b + sum_{j -> i} w_ji / sqrt(d_j d_i) * W x_j)` over the
    incoming edges of `i` plus one self loop per node, with `d_i` the
    weighted in-degree including the loop. As PyTorch Geometric's
    `GCNConv`: an existing self loop keeps its weight (several are summed),
    a node without one gets a loop of weight 1; isolated nodes keep
    `W x_i` (their only edge is the loop).

    Args:
        units: int, output features per node.
        activation: activation of the output. Defaults to `None`.
        use_bias: bool. Defaults to `True`.
        add_self_loops: bool, add the self loops described above. Defaults
            to `True`.
        kernel_initializer: initializer of `W`. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of `b`. Defaults to `"zeros"`.
        **kwargs: passed to `keras.layers.Layer`.

    Returns:
        A layer mapping `(node_features (N, F), edge_index (2, E),
        edge_weight (E,) or None)` to `(N, units)`. Edge weights count as
        multiplicities; `None` means all ones.
        The call is `propagate(project(node_features), edge_index,
        edge_weight)`: `project` is the linear part, which graphs with
        the same node features can share.

    Example:

    ```python
    graph = keras_local.datasets.load_cora()
    layer = keras_local.layers.GCNConv(16, activation="relu")
    h = layer(graph.x, graph.edge_index)  # (2708, 16)
    ```

    References:
        - Kipf & Welling, "Semi-Supervised Classification with Graph
          Convolutional Networks", ICLR 2017.
    """

    def __init__(
        self, units, activation=None, use_bias=True, add_self_loops=True,
        kernel_initializer="glorot_uniform", bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(
            units, activation=activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer, **kwargs,
        )
        self.add_self_loops = bool(add_self_loops)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(self.node_feature_size(input_shape), self.units),
            initializer=self.kernel_initializer, name="kernel",
        )
        self.add_bias()

    def propagate(self, projected, edge_index, edge_weight=None):
        """The layer's output from `project(node_features)`: the normalised
        sum over incoming edges and self loops, bias and activation."""
        h = projected
        num_nodes = h.shape[0]
        edge_index = ops.cast(edge_index, "int32")
        weight = graph.edge_weights_or_ones(edge_index, edge_weight, h.dtype)
        source, target = edge_index[0], edge_index[1]
        if self.add_self_loops:
            weight, loop = graph.self_loop_weights(edge_index, weight, num_nodes)
        else:
            loop = ops.zeros((num_nodes,), dtype=h.dtype)
        degree = graph.propagate(weight, target, num_nodes) + loop
        inv_sqrt = ops.where(degree > 0, ops.rsqrt(ops.maximum(degree, 1e-30)), 0.0)
        norm = ops.take(inv_sqrt, source, axis=0) * weight * ops.take(inv_sqrt, target, axis=0)
        messages = ops.take(h, source, axis=0) * ops.expand_dims(norm, -1)
        out = graph.propagate(messages, target, num_nodes)
        out = out + h * ops.expand_dims(loop * ops.square(inv_sqrt), -1)
        return self.finish(out)

    def get_config(self):
        config = super().get_config()
        config["add_self_loops"] = self.add_self_loops
        return config
