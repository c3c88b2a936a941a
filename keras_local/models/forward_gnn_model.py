import keras
import numpy as np
from keras import ops

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.datasets import graph_inputs
from keras_local.layers.gat_conv import GATConv
from keras_local.layers.gcn_conv import GCNConv
from keras_local.layers.sage_conv import SAGEConv
from keras_local.models.local_model import LocalModel
from keras_local.rules import forward_forward as ff
from keras_local.rules import forward_gnn as fg
from keras_local.rules import single_forward as sf


@keras_local_export
class ForwardGNNModel(LocalModel):
    """Forward learning of a graph neural network for node classification.

    ForwardGNN (Park et al., ICLR 2024) trains each graph-convolution layer
    on its own loss, on the detached, row-normalised (L2) output of the
    layer below; no gradient crosses a layer. Training is full-graph and
    transductive: one batch is the whole graph (see
    `keras_local.datasets.graph_inputs.graph_batch`), `y` holds the node
    labels and `sample_weight` the training-node mask. Four rules:

    - `"ff_la"`, Forward-Forward with label appending: the one-hot label
      of each training node (the uniform vector `1/K` for the others) is
      appended to the input features; positive graph with the true labels,
      negative graph with a random wrong label per training node. Loss of
      each layer: `BCE(sum(h^2) - theta, 1)` on the positive and
      `BCE(., 0)` on the negative graph, over the training nodes.
      Prediction: for each class `c`, every node without a known label
      gets `c` appended; the score is the goodness `sum(h^2)` summed over
      the layers.
    - `"ff_vn"`, Forward-Forward with virtual class nodes: `K` virtual
      nodes (fixed random `N(0, 1)` features) are added, and each training
      node is linked (both ways) to the virtual node of its class
      (positive graph) or of a random wrong class (negative graph); same
      loss. Both graphs feed the next layer the positive graph's output,
      as the reference does. Prediction: for each class `c`, nodes without
      a known label are linked to virtual node `c`.
    - `"sf"`, single-forward: one graph, training nodes linked to their
      class's virtual node; the loss is the cross-entropy of
      `softmax_k(<h_i, h_{v_k}> / T)` over the training nodes; no negative
      data. Prediction: the sum over layers of these softmax vectors, with
      the nodes of known label (`x["known_labels"]`) linked.
    - `"sf_topdown"`, single-forward with top-down signals ("top-to-loss"
      in the reference): the loss of layer `j` uses
      `mean(h_j, s_{j+2}, ..., s_L)`, with `s` the detached, normalised
      states of the layers above from a bottom-up pass at the start of
      the step (the reference carries them over from the previous step);
      each layer's gradient is clipped to norm `clip_norm`.

    Inputs are dicts `{"node_features": (1, N, F), "edge_index": (1, 2,
    E)}`, optionally with `"edge_weight"` and `"known_labels"` (labels
    visible when predicting, `-1` elsewhere; the virtual-node and
    label-appending rules use them, as the reference keeps the training
    labels visible when it evaluates). `predict` returns `(1, N, K)`
    scores; compile with `weighted_metrics=["accuracy"]` and evaluate with the
    validation or test mask as `sample_weight`. Training logs `loss` (sum
    of the layer losses) and `layer_{i}_loss`.

    Args:
        num_classes: int, number of classes `K`.
        conv: `"gcn"`, `"sage"` or `"gat"`. Defaults to `"gcn"`.
        rule: `"ff_la"`, `"ff_vn"`, `"sf"` or `"sf_topdown"`. Defaults to
            `"sf"`.
        num_layers: int, number of graph-convolution layers. Defaults to
            `2`.
        units: int, output features of every layer. Defaults to `128`.
        heads: int, attention heads of `"gat"` (must divide `units`).
            Defaults to `4`.
        threshold: float, the FF threshold `theta`. Defaults to `2.0`.
        temperature: float, the SF softmax temperature. Defaults to `1.0`.
        bidirectional: bool, virtual-node edges in both directions.
            Defaults to `True`.
        clip_norm: float or `None`, per-layer gradient-norm clip of
            `"sf_topdown"` (the reference uses 1). Defaults to `1.0`.
        seed: int or `None`, seeds the virtual-node features and the
            negative labels. Defaults to `None`.

    Returns:
        A `keras.Model` whose `predict` gives `(1, num_nodes, num_classes)`
        scores.

    Example:

    ```python
    x, y, train_mask = graph_batch(features, edge_index, labels,
                                   mask=train_index, known_mask=train_index)
    model = ForwardGNNModel(num_classes=7, conv="gcn", rule="sf")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), weighted_metrics=["accuracy"])
    model.fit(x, y, sample_weight=train_mask, batch_size=1, epochs=100)
    ```

    References:
        - Park, Shin, Park, Yoo & Kim, "Forward Learning of Graph Neural
          Networks", ICLR 2024 (code: facebookresearch/forwardgnn).
        - Hinton, "The Forward-Forward Algorithm", 2022.
    """

    def __init__(
        self,
        num_classes,
        conv="gcn",
        rule="sf",
        num_layers=2,
        units=128,
        heads=4,
        threshold=2.0,
        temperature=1.0,
        bidirectional=True,
        clip_norm=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(
                f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}"
            )
        check_choice("conv", conv, fg.CONVS)
        check_choice("rule", rule, fg.NODE_RULES)
        if not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
            raise ValueError(
                f"`num_layers` must be a positive int. Received: num_layers={num_layers!r}"
            )
        if float(temperature) <= 0:
            raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature!r}")
        self.num_classes = int(num_classes)
        self.conv = conv
        self.rule = rule
        self.num_layers = int(num_layers)
        self.units = int(units)
        self.heads = int(heads)
        self.threshold = float(threshold)
        self.temperature = float(temperature)
        self.bidirectional = bool(bidirectional)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.convs = [
            make_conv(conv, self.units, self.heads, name=f"{conv}_conv_{i}")
            for i in range(self.num_layers)
        ]
        self.class_features = None

    # ------------------------------------------------------------------ #
    def uses_virtual_nodes(self):
        return self.rule != "ff_la"

    def build(self, input_shape):
        features = _feature_size(input_shape)
        width = features + (self.num_classes if self.rule == "ff_la" else 0)
        for conv in self.convs:
            if not conv.built:
                conv.build((None, width))
            width = self.units
        if self.uses_virtual_nodes() and self.class_features is None:
            self.class_features = self.add_weight(
                shape=(self.num_classes, features), initializer="zeros",
                trainable=False, name="class_features",
            )
            self.class_features.assign(
                sf.initial_class_embeddings(
                    self.num_classes, (features,), 0 if self.seed is None else self.seed
                )
            )
        self.built = True

    def compute_output_shape(self, input_shape):
        nodes = input_shape[graph_inputs.NODE_FEATURES][1]
        return (1, nodes, self.num_classes)

    # ------------------------------------------------------------------ #
    # Graph plumbing.
    # ------------------------------------------------------------------ #
    @staticmethod
    def unpack(x):
        features = ops.convert_to_tensor(x[graph_inputs.NODE_FEATURES])[0]
        edge_index = ops.cast(x[graph_inputs.EDGE_INDEX], "int32")[0]
        weight = x.get(graph_inputs.EDGE_WEIGHT)
        weight = None if weight is None else ops.cast(weight, features.dtype)[0]
        known = x.get(graph_inputs.KNOWN_LABELS)
        if known is None:
            known = -ops.ones((features.shape[0],), dtype="int32")
        else:
            known = ops.cast(known, "int32")[0]
        return features, edge_index, weight, known

    def _class_features(self, ntv=None):
        if ntv is None:
            return self.class_features.value
        return ntv[self.variable_position(self.class_features)]

    def _vn_graph(self, features, edge_index, weight, labels, mask, class_features):
        return fg.virtual_node_graph(
            features, edge_index, weight, labels, mask, class_features,
            bidirectional=self.bidirectional,
        )

    def _runner(self, tv=None, ntv=None):
        if tv is None:
            def run(i, h, edges, weight):
                return self.convs[i](h, edges, weight)
        else:
            def run(i, h, edges, weight):
                return self.layer_call(
                    self.convs[i], tv, ntv, h, training=False,
                    edge_index=edges, edge_weight=weight,
                )[0]
        return run

    # ------------------------------------------------------------------ #
    # Prediction, written once over `run(i, h, edges, weight)`.
    # ------------------------------------------------------------------ #
    def scores(self, x, run, class_features):
        features, edge_index, weight, known = self.unpack(x)
        n = features.shape[0]
        if self.rule in ("sf", "sf_topdown"):
            mask = ops.cast(known >= 0, features.dtype)
            h, edges, w = self._vn_graph(features, edge_index, weight, known, mask, class_features)
            if self.rule == "sf":
                votes = self._sf_votes(h, edges, w, run, n)
            else:
                votes = self._topdown_votes(h, edges, w, run, n)
            return ops.expand_dims(votes, 0)
        columns = []
        for c in range(self.num_classes):
            labels = ops.where(known >= 0, known, c)
            full = ops.ones((n,), dtype=features.dtype)
            if self.rule == "ff_la":
                h = fg.append_labels(features, labels, full, self.num_classes)
                edges, w = edge_index, weight
            else:
                h, edges, w = self._vn_graph(
                    features, edge_index, weight, labels, full, class_features
                )
            total = ops.zeros((n,), dtype=features.dtype)
            for i in range(self.num_layers):
                h = run(i, sf.row_normalize(h), edges, w)
                total = total + ops.sum(ops.square(h[:n]), axis=-1)
            columns.append(total)
        return ops.expand_dims(ops.stack(columns, axis=-1), 0)

    def _sf_votes(self, h, edges, w, run, n):
        votes = 0.0
        for i in range(self.num_layers):
            h = run(i, sf.row_normalize(h), edges, w)
            votes = votes + sf.class_probabilities(h[:n], h[n:], self.temperature)
        return votes

    def _bottom_up(self, h, edges, w, run):
        states = [sf.row_normalize(h)]
        outputs = []
        for i in range(self.num_layers):
            outputs.append(run(i, states[-1], edges, w))
            states.append(sf.row_normalize(outputs[-1]))
        return states, outputs

    def _topdown_votes(self, h, edges, w, run, n):
        states, outputs = self._bottom_up(h, edges, w, run)
        votes = 0.0
        for j in range(self.num_layers):
            embedding = sf.topdown_loss_embedding(outputs[j], states[j + 2:])
            votes = votes + sf.class_probabilities(embedding[:n], embedding[n:], self.temperature)
        return votes

    def call(self, x, training=False):
        class_features = self.class_features.value if self.uses_virtual_nodes() else None
        return self.scores(x, self._runner(), class_features)

    # ------------------------------------------------------------------ #
    # The rule.
    # ------------------------------------------------------------------ #
    def local_log_names(self):
        return [f"layer_{i}_loss" for i in range(self.num_layers)]

    def negative_labels_for(self, labels, ntv):
        """Random wrong labels of the negative graph (FF rules)."""
        return ff.random_wrong_labels(labels, self.num_classes, self.step_seed(ntv))

    def local_grads(self, trainable_values, non_trainable_values, x, y, sample_weight):
        tv, ntv = trainable_values, non_trainable_values
        features, edge_index, weight, _ = self.unpack(x)
        n = features.shape[0]
        labels = ops.cast(ops.reshape(y, (-1,)), "int32")
        if sample_weight is None:
            mask = ops.ones((n,), dtype=features.dtype)
        else:
            mask = ops.cast(ops.reshape(sample_weight, (-1,)), features.dtype)
        class_features = self._class_features(ntv) if self.uses_virtual_nodes() else None
        grads = [ops.zeros_like(v) for v in tv]
        if self.rule == "ff_la":
            negatives = self.negative_labels_for(labels, ntv)
            positive = fg.append_labels(features, labels, mask, self.num_classes)
            negative = fg.append_labels(features, negatives, mask, self.num_classes)
            graphs = ((edge_index, weight), (edge_index, weight))
            return self._ff_grads(tv, ntv, grads, positive, negative, graphs, mask, n, shared=False)
        if self.rule == "ff_vn":
            negatives = self.negative_labels_for(labels, ntv)
            h, pos_edges, pos_w = self._vn_graph(features, edge_index, weight, labels, mask, class_features)
            _, neg_edges, neg_w = self._vn_graph(features, edge_index, weight, negatives, mask, class_features)
            graphs = ((pos_edges, pos_w), (neg_edges, neg_w))
            return self._ff_grads(tv, ntv, grads, h, h, graphs, mask, n, shared=True)
        h, edges, w = self._vn_graph(features, edge_index, weight, labels, mask, class_features)
        return self._sf_grads(tv, ntv, grads, h, edges, w, labels, mask, n)

    def _layer_params(self, i, tv, ntv):
        conv = self.convs[i]
        t_idx = self.variable_indices(conv, trainable=True)
        n_idx = self.variable_indices(conv, trainable=False)
        return conv, t_idx, self.gather(tv, t_idx), self.gather(ntv, n_idx)

    def _ff_grads(self, tv, ntv, grads, positive, negative, graphs, mask, n, shared):
        (pos_edges, pos_w), (neg_edges, neg_w) = graphs
        total = ops.convert_to_tensor(0.0, dtype="float32")
        logs = {}
        for i in range(self.num_layers):
            conv, t_idx, params, conv_ntv = self._layer_params(i, tv, ntv)

            def layer_loss(params, h_pos, h_neg):
                out_pos, _ = conv.stateless_call(
                    params, conv_ntv, sf.row_normalize(h_pos), pos_edges, pos_w
                )
                out_neg, _ = conv.stateless_call(
                    params, conv_ntv, sf.row_normalize(h_neg), neg_edges, neg_w
                )
                loss = fg.goodness_bce_loss(out_pos[:n], out_neg[:n], self.threshold, mask)
                return loss, (out_pos, out_neg)

            (loss, (out_pos, out_neg)), layer_grads = backend.value_and_grad(
                layer_loss, has_aux=True
            )(params, positive, negative)
            grads = self.scatter(grads, t_idx, layer_grads)
            positive = out_pos
            # FF+VN: both graphs take the positive graph's output upward.
            negative = out_pos if shared else out_neg
            total = total + ops.cast(loss, "float32")
            logs[f"layer_{i}_loss"] = loss
        return grads, ntv, total, None, logs

    def _sf_grads(self, tv, ntv, grads, h, edges, w, labels, mask, n):
        run = self._runner(tv, ntv)
        if self.rule == "sf_topdown":
            states, _ = self._bottom_up(h, edges, w, run)
            states = backend.stop_gradient(states)
        else:
            states = [sf.row_normalize(h)]
        total = ops.convert_to_tensor(0.0, dtype="float32")
        logs = {}
        votes = 0.0
        for i in range(self.num_layers):
            conv, t_idx, params, conv_ntv = self._layer_params(i, tv, ntv)
            above = states[i + 2:] if self.rule == "sf_topdown" else []

            def layer_loss(params, inputs):
                out, _ = conv.stateless_call(params, conv_ntv, inputs, edges, w)
                embedding = sf.topdown_loss_embedding(out, above) if above else out
                logits = sf.similarity_logits(embedding[:n], embedding[n:], self.temperature)
                per_node = -ops.take_along_axis(
                    ops.log_softmax(logits, axis=-1), ops.expand_dims(labels, -1), axis=-1
                )[:, 0]
                loss = fg.masked_mean(per_node, mask)
                return loss, (out, ops.softmax(logits, axis=-1))

            (loss, (out, probabilities)), layer_grads = backend.value_and_grad(
                layer_loss, has_aux=True
            )(params, states[i])
            if self.rule == "sf_topdown" and self.clip_norm is not None:
                layer_grads = clip_by_global_norm(layer_grads, self.clip_norm)
            grads = self.scatter(grads, t_idx, layer_grads)
            if self.rule == "sf":
                states.append(sf.row_normalize(out))
            votes = votes + probabilities
            total = total + ops.cast(loss, "float32")
            logs[f"layer_{i}_loss"] = loss
        return grads, ntv, total, ops.expand_dims(votes, 0), logs

    # ------------------------------------------------------------------ #
    # Input checks.
    # ------------------------------------------------------------------ #
    def validate_data(self, x, y=None, sample_weight=None):
        graph_inputs.validate_graph_inputs(x, y, sample_weight, self.num_classes)

    def validate_shapes(self, x, y=None):
        if not isinstance(x, dict) or len(tuple(x[graph_inputs.NODE_FEATURES].shape)) != 3:
            raise ValueError(
                "ForwardGNNModel takes a dict with 'node_features' (1, N, F) "
                "and 'edge_index' (1, 2, E). Received: "
                f"{keras.tree.map_structure(lambda t: tuple(t.shape), x)}."
            )

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "conv": self.conv,
            "rule": self.rule,
            "num_layers": self.num_layers,
            "units": self.units,
            "heads": self.heads,
            "threshold": self.threshold,
            "temperature": self.temperature,
            "bidirectional": self.bidirectional,
            "clip_norm": self.clip_norm,
        })
        return config


def make_conv(conv, units, heads=4, activation="relu", **kwargs):
    """A `GCNConv`, `SAGEConv` or `GATConv` (ReLU, as the reference)."""
    check_choice("conv", conv, fg.CONVS)
    if conv == "gcn":
        return GCNConv(units, activation=activation, **kwargs)
    if conv == "sage":
        return SAGEConv(units, activation=activation, **kwargs)
    return GATConv(units, heads=heads, activation=activation, **kwargs)


def clip_by_global_norm(grads, clip_norm):
    norm = ops.sqrt(sum(ops.sum(ops.square(g)) for g in grads))
    scale = ops.minimum(1.0, clip_norm / (norm + 1e-6))
    return [g * ops.cast(scale, g.dtype) for g in grads]


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Unknown `{name}`. Expected one of {choices}. Received: {name}={value!r}"
        )


def _feature_size(input_shape):
    if not isinstance(input_shape, dict) or graph_inputs.NODE_FEATURES not in input_shape:
        raise ValueError(
            "Graph models are built from a dict of shapes with "
            f"'node_features' (1, N, F). Received: input_shape={input_shape!r}."
        )
    shape = tuple(input_shape[graph_inputs.NODE_FEATURES])
    if len(shape) != 3 or shape[-1] is None:
        raise ValueError(
            "'node_features' must have shape (1, num_nodes, features). "
            f"Received: {shape}."
        )
    return int(shape[-1])
