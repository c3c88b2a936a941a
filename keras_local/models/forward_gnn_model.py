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
from keras_local.rules.portable_random import portable_randint
from keras_local.rules.precision import full_precision
from keras_local.rules.precision import loss_dtype


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
      Prediction: for each class `c`, the nodes being evaluated
      (`x["query_mask"]`; every node without a known label if absent) get
      `c` appended, the other unlabelled nodes keep `1/K` as in training;
      the score is the goodness `sum(h^2)` summed over the layers.
    - `"ff_vn"`, Forward-Forward with virtual class nodes: `K` virtual
      nodes (fixed random `N(0, 1)` features) are added, and each training
      node is linked (both ways) to the virtual node of its class
      (positive graph) or of a random wrong class (negative graph); same
      loss. Both graphs feed the next layer the positive graph's output,
      as the reference does. Prediction: for each class `c`, the nodes
      being evaluated (`x["query_mask"]`; every node without a known label
      if absent) are linked to virtual node `c`.
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
    E)}`, optionally with `"edge_weight"`, `"known_labels"` (labels
    visible when predicting, `-1` elsewhere; the virtual-node and
    label-appending rules use them, as the reference keeps the training
    labels visible when it evaluates) and `"query_mask"` (the nodes being
    evaluated; `graph_inputs.dataset_batches` sets it to the split's
    nodes). `predict` returns `(1, N, K)`
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
        num_negatives: int or `None`, wrong classes per training node in
            each step of the FF rules: one negative graph each, the
            negative loss averaged over them. `None` uses all `K - 1`
            wrong classes, as the reference's runs do. Defaults to `1`.
        dropout: float in `[0, 1)`, dropout rate on the (row-normalised)
            input of each layer while that layer learns; not in the
            reference (whose runs use none), a regulariser for the small
            labelled sets of the Planetoid splits. Defaults to `0.0`.
        weight_decay: float, L2 coefficient added to every pseudo-gradient
            (`g + weight_decay * w`), as PyTorch's `Adam(weight_decay=...)`
            of the reference (which uses `5e-4`). Defaults to `0.0`.
        seed: int or `None`, seeds the virtual-node features and the
            negative labels. Defaults to `None`.

    Layer-wise training: the reference trains the layers one after the
    other, each to its own early stop. `set_active_layer(i)` makes the
    train step update layer `i` only (the layers below run forward, the
    layers above are skipped) and `predict` use layers `0..i`;
    `set_active_layer(None)` (the default) updates every layer in every
    step. `"sf_topdown"` always trains its layers together.

    Returns:
        A `keras.Model` whose `predict` gives `(1, num_nodes, num_classes)`
        scores.

    Example:

    ```python
    graph = keras_local.datasets.load_cora()
    x, y, train_mask = keras_local.datasets.graph_batch(
        graph.x, graph.edge_index, graph.y, mask=graph.train_index,
        known_mask=graph.train_index)
    model = keras_local.ForwardGNNModel(num_classes=7, conv="gcn", rule="sf")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), weighted_metrics=["accuracy"])
    model.fit(x, y, sample_weight=train_mask, batch_size=1, epochs=100)

    # The reference's schedule: one layer after the other.
    model = keras_local.ForwardGNNModel(num_classes=7, rule="sf", weight_decay=5e-4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    for i in range(model.num_layers):
        model.set_active_layer(i)
        model.fit(x, y, sample_weight=train_mask, batch_size=1, epochs=300)
    ```

    References:
        - Park, Shin, Park, Yoo & Kim, "Forward Learning of Graph Neural
          Networks", ICLR 2024 (code: facebookresearch/forwardgnn).
        - Hinton, "The Forward-Forward Algorithm", 2022.
    """

    splits_across_replicas = False

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
        num_negatives=1,
        dropout=0.0,
        weight_decay=0.0,
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
        if num_negatives is not None and (
            not isinstance(num_negatives, (int, np.integer)) or not 1 <= num_negatives < num_classes
        ):
            raise ValueError(
                "`num_negatives` must be None (all wrong classes) or an int in "
                f"[1, num_classes). Received: num_negatives={num_negatives!r}"
            )
        if float(weight_decay) < 0:
            raise ValueError(
                f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay!r}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
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
        self.num_negatives = None if num_negatives is None else int(num_negatives)
        self.weight_decay = float(weight_decay)
        self.dropout = float(dropout)
        self.active_layer = None
        self.convs = [
            make_conv(conv, self.units, self.heads, name=f"{conv}_conv_{i}")
            for i in range(self.num_layers)
        ]
        self.class_features = None

    # ------------------------------------------------------------------ #
    def set_active_layer(self, index, reset_optimizer=True):
        """Trains layer `index` only from now on (`None`: every layer).

        The layers below `index` run forward only, the layers above are
        skipped, and `predict` uses layers `0..index`, as the reference
        does while it trains one layer after the other. The compiled
        functions are rebuilt; with `reset_optimizer=True` the optimizer's
        state (moments, step count) is zeroed, so the new layer starts like
        the reference's fresh per-layer optimizer and the finished layers,
        which now get zero pseudo-gradients, stay where they are.

        Args:
            index: int in `[0, num_layers)` or `None`.
            reset_optimizer: bool. Defaults to `True`.
        """
        if index is not None and self.rule == "sf_topdown":
            raise ValueError(
                "`sf_topdown` trains all layers together (its loss uses the "
                "layers above). Received: set_active_layer("
                f"{index!r}) on rule='sf_topdown'. Use rule='sf' for "
                "layer-wise training."
            )
        activate_layer(self, index, reset_optimizer)

    def _layers_used(self):
        """Number of layers that run: all, or up to the active one."""
        return layers_used(self)

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
        # The nodes that carry a label in each candidate pass: the known
        # ones and the queried ones; the others stay as in training.
        query = x.get(graph_inputs.QUERY_MASK)
        if query is None:
            labelled = ops.ones((n,), dtype=features.dtype)
        else:
            query = ops.cast(ops.convert_to_tensor(query)[0], features.dtype)
            labelled = ops.where(known >= 0, ops.ones_like(query), query)
        candidates = [ops.where(known >= 0, known, c) for c in range(self.num_classes)]
        if self.rule == "ff_la":
            inputs = ("labels", features, [
                fg.label_rows(labels, labelled, self.num_classes, features.dtype)
                for labels in candidates
            ])
            graphs = [(edge_index, weight)] * self.num_classes
        else:
            graphs = []
            for labels in candidates:
                h, edges, w = self._vn_graph(
                    features, edge_index, weight, labels, labelled, class_features
                )
                graphs.append((edges, w))
            inputs = ("shared", h)  # the node features do not depend on the labels
        columns = [ops.zeros((n,), dtype=loss_dtype())] * self.num_classes
        for i in range(self._layers_used()):
            conv = self.convs[i]
            outputs = [
                conv.propagate(p, e, w)
                for p, (e, w) in zip(self._projections(conv.project, inputs, len(graphs)), graphs)
            ]
            columns = [
                t + ops.sum(ops.square(full_precision(h[:n])), axis=-1)
                for t, h in zip(columns, outputs)
            ]
            inputs = ("each", outputs)
        return ops.expand_dims(ops.stack(columns, axis=-1), 0)

    def _projections(self, project, inputs, count, drop=None):
        """`project(drop(row_normalize(h)))` of the input `h` of each of
        `count` graphs, sharing what the graphs share. `inputs` is
        `("labels", x, label_blocks)` (FF+LA's first layer: `[x, r]` per
        block, the wide part projected once when there is no dropout),
        `("shared", h)` (one input for every graph: projected once) or
        `("each", [h, ...])`. `drop` applies the same mask to every graph."""
        kind = inputs[0]
        if kind == "labels" and drop is None:
            return fg.appended_label_projections(project, inputs[1], inputs[2])
        prepare = sf.row_normalize if drop is None else (lambda h: drop(sf.row_normalize(h)))
        if kind == "shared":
            return [project(prepare(inputs[1]))] * count
        if kind == "labels":
            hs = [ops.concatenate([inputs[1], rows], axis=-1) for rows in inputs[2]]
        else:
            hs = inputs[1]
        return [project(prepare(h)) for h in hs]

    def _sf_votes(self, h, edges, w, run, n):
        votes = 0.0
        for i in range(self._layers_used()):
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
    def gradient_groups(self):
        return list(self.convs)

    def local_log_names(self):
        return [f"layer_{i}_loss" for i in range(self.num_layers)]

    def negative_labels_for(self, labels, ntv):
        """The wrong labels of the negative graphs (FF rules): a list of
        `num_negatives` label vectors (`K - 1` for `None`), each node's
        entries distinct and different from its label. The first is
        `random_wrong_labels`; the others follow it cyclically over the
        wrong classes, so `None` gives every wrong class once."""
        count = self.num_classes - 1 if self.num_negatives is None else self.num_negatives
        first = ff.random_wrong_labels(labels, self.num_classes, self.step_seed(ntv))
        if count == 1:
            return [first]
        return fg.cyclic_wrong_labels(labels, first, self.num_classes, count)

    def _decayed(self, layer_grads, params):
        if not self.weight_decay:
            return layer_grads
        return [g + ops.cast(self.weight_decay, g.dtype) * p for g, p in zip(layer_grads, params)]

    def _dropped(self, h, i, ntv):
        """Inverted dropout of a layer input while it learns (same mask for
        every graph of the step; drawn with `portable_randint`)."""
        if not self.dropout:
            return h
        scale = 1 << 20
        draws = portable_randint(self.step_seed(ntv, salt=101 + i), ops.shape(h), scale)
        keep = ops.cast(draws >= int(self.dropout * scale), h.dtype)
        return h * keep / (1.0 - self.dropout)

    def _layer_state(self, i):
        return layer_state(self, i)

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
            blocks = [
                fg.label_rows(m, mask, self.num_classes, features.dtype)
                for m in [labels] + negatives
            ]
            graphs = [(edge_index, weight)] * len(blocks)
            return self._ff_grads(tv, ntv, grads, ("labels", features, blocks), graphs, mask, n)
        if self.rule == "ff_vn":
            negatives = self.negative_labels_for(labels, ntv)
            graphs = []
            for m in [labels] + negatives:
                h, edges, w = self._vn_graph(features, edge_index, weight, m, mask, class_features)
                graphs.append((edges, w))
            # One projection per graph, not one shared: XLA then keeps fewer
            # graphs' messages alive at once (Cora-GCN, 8 layers: 135 MiB
            # against 189 shared), at the cost of a slower first layer.
            return self._ff_grads(tv, ntv, grads, ("each", [h] * len(graphs)), graphs, mask, n)
        h, edges, w = self._vn_graph(features, edge_index, weight, labels, mask, class_features)
        return self._sf_grads(tv, ntv, grads, h, edges, w, labels, mask, n)

    def _layer_params(self, i, tv, ntv):
        conv = self.convs[i]
        t_idx = self.variable_indices(conv, trainable=True)
        n_idx = self.variable_indices(conv, trainable=False)
        return conv, t_idx, self.gather(tv, t_idx), self.gather(ntv, n_idx)

    def _ff_grads(self, tv, ntv, grads, inputs, graphs, mask, n):
        """FF layers on the positive graph (`graphs[0]`) and the negative
        graphs; the loss is `BCE(pos, 1)` plus the mean over negative graphs
        of `BCE(neg, 0)` (the reference's `loss_pos + mean(loss_neg_parts)`).
        `inputs` as in `_projections`: FF+LA appends each graph's labels to
        the features and then carries every graph's own output upward;
        FF+VN gives every graph the positive graph's output."""
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        logs = {}
        for i in range(self.num_layers):
            state = self._layer_state(i)
            if state == "skip":
                logs[f"layer_{i}_loss"] = ops.convert_to_tensor(0.0, dtype=loss_dtype())
                continue
            conv, t_idx, params, conv_ntv = self._layer_params(i, tv, ntv)

            def layer_outputs(params, inputs, drop=None):
                def project(h):
                    return _stateless_method(conv, params, conv_ntv, "project", h)

                outputs = [
                    _stateless_method(conv, params, conv_ntv, "propagate", p, e, w)
                    for p, (e, w) in zip(self._projections(project, inputs, len(graphs), drop), graphs)
                ]
                return outputs[0], outputs[1:]

            def layer_loss(params):
                drop = (lambda h: self._dropped(h, i, ntv)) if self.dropout else None
                out_pos, out_negs = layer_outputs(params, inputs, drop)
                pos = fg.binary_cross_entropy_with_logits(
                    fg.ff_logits(out_pos[:n], self.threshold), 1.0
                )
                neg = [
                    fg.masked_mean(fg.binary_cross_entropy_with_logits(
                        fg.ff_logits(o[:n], self.threshold), 0.0), mask)
                    for o in out_negs
                ]
                loss = fg.masked_mean(pos, mask) + sum(neg) / len(neg)
                return loss, (out_pos, out_negs)

            if state == "forward":
                out_pos, out_negs = layer_outputs(params, inputs)
                out_pos = backend.stop_gradient(out_pos)
                out_negs = [backend.stop_gradient(o) for o in out_negs]
                loss = ops.convert_to_tensor(0.0, dtype=loss_dtype())
            else:
                (loss, (out_pos, out_negs)), layer_grads = backend.value_and_grad(
                    layer_loss, has_aux=True
                )(params)
                grads = self.scatter(grads, t_idx, self._decayed(layer_grads, params))
                if self.dropout:
                    # The next layer learns on this layer's inference output.
                    out_pos, out_negs = layer_outputs(params, inputs)
            if self.rule == "ff_vn":
                inputs = ("each", [out_pos] * len(graphs))
            else:
                inputs = ("each", [out_pos] + out_negs)
            total = total + ops.cast(loss, loss_dtype())
            logs[f"layer_{i}_loss"] = loss
        return grads, ntv, total, None, logs

    def _sf_grads(self, tv, ntv, grads, h, edges, w, labels, mask, n):
        run = self._runner(tv, ntv)
        if self.rule == "sf_topdown":
            states, _ = self._bottom_up(h, edges, w, run)
            states = backend.stop_gradient(states)
        else:
            states = [sf.row_normalize(h)]
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        logs = {}
        votes = 0.0
        for i in range(self.num_layers):
            state = self._layer_state(i)
            if state == "skip":
                logs[f"layer_{i}_loss"] = ops.convert_to_tensor(0.0, dtype=loss_dtype())
                continue
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

            if state == "forward":
                out, _ = conv.stateless_call(params, conv_ntv, states[i], edges, w)
                out = backend.stop_gradient(out)
                probabilities = sf.class_probabilities(out[:n], out[n:], self.temperature)
                loss = ops.convert_to_tensor(0.0, dtype=loss_dtype())
            else:
                (loss, (out, probabilities)), layer_grads = backend.value_and_grad(
                    layer_loss, has_aux=True
                )(params, self._dropped(states[i], i, ntv))
                if self.dropout:
                    # The next layer learns on this layer's inference output.
                    out, _ = conv.stateless_call(params, conv_ntv, states[i], edges, w)
                layer_grads = self._decayed(layer_grads, params)
                if self.rule == "sf_topdown" and self.clip_norm is not None:
                    layer_grads = clip_by_global_norm(layer_grads, self.clip_norm)
                grads = self.scatter(grads, t_idx, layer_grads)
            if self.rule == "sf":
                states.append(sf.row_normalize(out))
            votes = votes + probabilities
            total = total + ops.cast(loss, loss_dtype())
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
            "num_negatives": self.num_negatives,
            "weight_decay": self.weight_decay,
            "dropout": self.dropout,
        })
        return config


def _stateless_method(layer, trainable_values, non_trainable_values, method, *args):
    """`layer.<method>(*args)` with the layer's variables read from the
    given values, as `layer.stateless_call` does for `call` (differentiable
    in `trainable_values`)."""
    mapping = list(zip(layer.trainable_variables, trainable_values))
    mapping += list(zip(layer.non_trainable_variables, non_trainable_values))
    with keras.StatelessScope(state_mapping=mapping):
        return getattr(layer, method)(*args)


def activate_layer(model, index, reset_optimizer=True):
    """`set_active_layer` of the layer-wise graph models: checks `index`
    (`None` or an int in `[0, model.num_layers)`), stores it, drops the
    compiled functions and optionally zeroes the optimizer's state."""
    if index is not None:
        if (isinstance(index, bool) or not isinstance(index, (int, np.integer))
                or not 0 <= index < model.num_layers):
            raise ValueError(
                f"`index` must be None or an int in [0, {model.num_layers}). "
                f"Received: index={index!r}"
            )
        index = int(index)
    model.active_layer = index
    model.train_function = None
    model.test_function = None
    model.predict_function = None
    optimizer = getattr(model, "optimizer", None)
    if reset_optimizer and optimizer is not None:
        reset_optimizer_state(optimizer)


def layers_used(model):
    """Number of layers that run: all, or up to the active one."""
    return model.num_layers if model.active_layer is None else model.active_layer + 1


def layer_state(model, i):
    """`"train"`, `"forward"` (a frozen layer below the active one) or
    `"skip"` (above it) for layer `i`."""
    if model.active_layer is None or i == model.active_layer:
        return "train"
    return "forward" if i < model.active_layer else "skip"


def make_conv(conv, units, heads=4, activation="relu", **kwargs):
    """A `GCNConv`, `SAGEConv` or `GATConv` (ReLU, as the reference)."""
    check_choice("conv", conv, fg.CONVS)
    if conv == "gcn":
        return GCNConv(units, activation=activation, **kwargs)
    if conv == "sage":
        return SAGEConv(units, activation=activation, **kwargs)
    return GATConv(units, heads=heads, activation=activation, **kwargs)


def reset_optimizer_state(optimizer):
    """Zeroes an optimizer's step count and slots (moments), keeping its
    hyper-parameters (the learning-rate variable)."""
    for variable in optimizer.variables:
        if variable.name == "learning_rate":
            continue
        variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))


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
