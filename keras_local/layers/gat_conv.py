from keras import ops

from keras_local.api_export import keras_local_export
from keras_local.layers.graph_conv import GraphConv
from keras_local.rules import forward_gnn as graph


@keras_local_export
class GATConv(GraphConv):
    """Graph attention convolution (multi-head, heads concatenated).

    Per head `k`: `z = W_k x`, `e_ji = LeakyReLU(a_s . z_j + a_t . z_i)`
    for each edge `j -> i` and a self loop per node, `alpha_ji = softmax`
    of `e` over the incoming edges of `i`, `h_i = sum_j alpha_ji z_j`;
    the heads are concatenated and a bias added, as PyTorch Geometric's
    `GATConv(concat=True)` without dropout (existing self loops are
    replaced by one loop per node). Edge weights act as multiplicities in
    the softmax, `alpha_ji = w_ji exp(e_ji) / sum w exp(e)`: weight 0
    removes an edge, all ones is the usual GAT.

    Args:
        units: int, output features per node over all heads (divisible by
            `heads`).
        heads: int, number of attention heads. Defaults to `4`.
        activation: activation of the output. Defaults to `None`.
        negative_slope: float, LeakyReLU slope of the scores. Defaults to
            `0.2`.
        use_bias: bool. Defaults to `True`.
        add_self_loops: bool. Defaults to `True`.
        kernel_initializer: initializer of `W` and the attention vectors.
            Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of the bias. Defaults to `"zeros"`.
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
    layer = keras_local.layers.GATConv(64, heads=4, activation="relu")
    h = layer(graph.x, graph.edge_index)  # (2708, 64)
    ```

    References:
        - Velickovic et al., "Graph Attention Networks", ICLR 2018.
    """

    def __init__(
        self, units, heads=4, activation=None, negative_slope=0.2,
        use_bias=True, add_self_loops=True,
        kernel_initializer="glorot_uniform", bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(
            units, activation=activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer, **kwargs,
        )
        if not isinstance(heads, int) or heads < 1 or units % heads:
            raise ValueError(
                "`heads` must be a positive int dividing `units`. Received: "
                f"units={units!r}, heads={heads!r}."
            )
        self.heads = heads
        self.negative_slope = float(negative_slope)
        self.add_self_loops = bool(add_self_loops)

    def build(self, input_shape):
        per_head = self.units // self.heads
        self.kernel = self.add_weight(
            shape=(self.node_feature_size(input_shape), self.units),
            initializer=self.kernel_initializer, name="kernel",
        )
        self.attention_source = self.add_weight(
            shape=(self.heads, per_head), initializer=self.kernel_initializer,
            name="attention_source",
        )
        self.attention_target = self.add_weight(
            shape=(self.heads, per_head), initializer=self.kernel_initializer,
            name="attention_target",
        )
        self.add_bias()

    def propagate(self, projected, edge_index, edge_weight=None):
        """The layer's output from `project(node_features)`: attention over
        the incoming edges (and self loops) per head, bias, activation."""
        num_nodes = projected.shape[0]
        dtype = projected.dtype
        edge_index = ops.cast(edge_index, "int32")
        weight = graph.edge_weights_or_ones(edge_index, edge_weight, dtype)
        source, target = edge_index[0], edge_index[1]
        if self.add_self_loops:
            weight, loop = graph.self_loop_weights(
                edge_index, weight, num_nodes, keep_existing=False
            )
            nodes = ops.arange(num_nodes, dtype="int32")
            source = ops.concatenate([source, nodes])
            target = ops.concatenate([target, nodes])
            weight = ops.concatenate([weight, loop])
        per_head = self.units // self.heads
        z = ops.reshape(projected, (-1, self.heads, per_head))
        score_source = ops.sum(z * ops.cast(self.attention_source, dtype), axis=-1)
        score_target = ops.sum(z * ops.cast(self.attention_target, dtype), axis=-1)
        scores = ops.take(score_source, source, axis=0) + ops.take(score_target, target, axis=0)
        scores = ops.leaky_relu(scores, negative_slope=self.negative_slope)
        alpha = graph.segment_softmax(scores, target, weight, num_nodes)
        messages = ops.take(z, source, axis=0) * ops.expand_dims(alpha, -1)
        out = ops.reshape(graph.propagate(messages, target, num_nodes), (-1, self.units))
        return self.finish(out)

    def get_config(self):
        config = super().get_config()
        config.update({
            "heads": self.heads,
            "negative_slope": self.negative_slope,
            "add_self_loops": self.add_self_loops,
        })
        return config
