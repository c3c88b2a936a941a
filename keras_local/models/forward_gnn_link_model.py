import numpy as np
from keras import ops

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.datasets import graph_inputs
from keras_local.models.forward_gnn_model import ForwardGNNModel
from keras_local.models.forward_gnn_model import _feature_size
from keras_local.models.forward_gnn_model import activate_layer
from keras_local.models.forward_gnn_model import check_choice
from keras_local.models.forward_gnn_model import layer_state
from keras_local.models.forward_gnn_model import layers_used
from keras_local.models.forward_gnn_model import make_conv
from keras_local.models.local_model import LocalModel
from keras_local.rules import forward_gnn as fg
from keras_local.rules import single_forward as sf
from keras_local.rules.precision import loss_dtype


@keras_local_export
class ForwardGNNLinkModel(LocalModel):
    """Forward learning of a graph neural network for link prediction.

    Each layer (a ReLU graph convolution on the row-normalised, detached
    output of the layer below) scores a candidate edge `(u, v)` from the
    product `p = z_u * z_v` of its node embeddings and learns on its own,
    positive edges against negative edges drawn uniformly at random in
    every step (ForwardGNN, Park et al. 2024):

    - `"ff"` (Forward-Forward): logit `sum(p^2) - theta`; loss
      `BCE(logit, 1)` averaged over the positives plus `BCE(logit, 0)`
      averaged over the negatives.
    - `"sf"` (single forward, the reference's "forward learning"): logit
      `sum(p)`; loss the mean BCE over positives and negatives together.

    Inputs: `{"node_features", "edge_index", "edge_label_index"}` (see
    `keras_local.datasets.graph_inputs.link_batch`): messages flow over
    `edge_index`; the candidates `edge_label_index` `(1, 2, P)` are the
    positive edges when training (weighted by `y` if given) and the edges
    to score when predicting. `predict` returns `(1, P)` link
    probabilities, the mean over layers of `sigmoid(logit)`; compile with
    `metrics=[keras.metrics.AUC()]` and evaluate with `y` the 0/1 labels.

    Args:
        conv: `"gcn"`, `"sage"` or `"gat"`. Defaults to `"gcn"`.
        rule: `"ff"` or `"sf"`. Defaults to `"sf"`.
        num_layers: int. Defaults to `2`.
        units: int. Defaults to `128`.
        heads: int, GAT heads. Defaults to `4`.
        threshold: float, FF threshold `theta`. Defaults to `2.0`.
        num_negatives: int, negative edges drawn per positive edge in each
            step. Defaults to `1`.
        seed: int or `None`, seeds the negative edges. Defaults to `None`.

    Layer-wise training, as the reference trains its link-prediction
    layers: `set_active_layer(i)` makes the train step update layer `i`
    only (the layers below run forward, the layers above are skipped) and
    `predict` average the layers `0..i`; `set_active_layer(None)` (the
    default) updates every layer in every step.

    Returns:
        A `keras.Model` whose `predict` gives `(1, P)` link probabilities.

    Example:

    ```python
    graph = keras_local.datasets.load_cora()
    split = keras_local.datasets.link_split(graph.edge_index, graph.num_nodes)
    x, _ = keras_local.datasets.link_batch(graph.x, split["edge_index"], split["train"][0])
    model = keras_local.ForwardGNNLinkModel(conv="gcn", rule="sf")
    model.compile(optimizer="adam", metrics=[keras.metrics.AUC()])
    model.fit(x, batch_size=1, epochs=100)
    ```

    References:
        - Park, Shin, Park, Yoo & Kim, "Forward Learning of Graph Neural
          Networks", ICLR 2024.
    """

    splits_across_replicas = False

    def __init__(self, conv="gcn", rule="sf", num_layers=2, units=128, heads=4,
                 threshold=2.0, num_negatives=1, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        check_choice("conv", conv, fg.CONVS)
        check_choice("rule", rule, fg.LINK_RULES)
        if not isinstance(num_negatives, (int, np.integer)) or num_negatives < 1:
            raise ValueError(
                f"`num_negatives` must be a positive int. Received: {num_negatives!r}"
            )
        self.conv = conv
        self.rule = rule
        self.num_layers = int(num_layers)
        self.units = int(units)
        self.heads = int(heads)
        self.threshold = float(threshold)
        self.num_negatives = int(num_negatives)
        self.convs = [make_conv(conv, self.units, self.heads, name=f"{conv}_conv_{i}")
                      for i in range(self.num_layers)]
        self.active_layer = None

    def set_active_layer(self, index, reset_optimizer=True):
        """Trains layer `index` only from now on (`None`: every layer).

        As `ForwardGNNModel.set_active_layer`: the layers below run forward
        only, the layers above are skipped, `predict` averages the layers
        `0..index`, the compiled functions are rebuilt and, with
        `reset_optimizer=True`, the optimizer's state is zeroed.

        Args:
            index: int in `[0, num_layers)` or `None`.
            reset_optimizer: bool. Defaults to `True`.
        """
        activate_layer(self, index, reset_optimizer)

    def build(self, input_shape):
        width = _feature_size(input_shape)
        for conv in self.convs:
            if not conv.built:
                conv.build((None, width))
            width = self.units
        self.built = True

    def compute_output_shape(self, input_shape):
        return (1, input_shape[graph_inputs.EDGE_LABEL_INDEX][-1])

    def _candidates(self, x):
        if graph_inputs.EDGE_LABEL_INDEX not in x:
            raise ValueError(
                "ForwardGNNLinkModel needs 'edge_label_index' (1, 2, P), the "
                "edges to learn or score. Received keys: "
                f"{sorted(x)}. Build inputs with `link_batch(...)`."
            )
        return ops.cast(x[graph_inputs.EDGE_LABEL_INDEX], "int32")[0]

    def _scores(self, x, run):
        features, edge_index, weight, _ = ForwardGNNModel.unpack(x)
        candidates = self._candidates(x)
        h = features
        total = 0.0
        used = layers_used(self)
        for i in range(used):
            h = run(i, sf.row_normalize(h), edge_index, weight)
            logits = fg.link_logits(fg.edge_products(h, candidates), self.rule, self.threshold)
            total = total + ops.sigmoid(logits)
        return ops.expand_dims(total / used, 0)

    def call(self, x, training=False):
        return self._scores(x, lambda i, h, e, w: self.convs[i](h, e, w))

    def fit(self, x=None, y=None, *args, **kwargs):
        # Without labels every candidate edge is a positive.
        if y is None and isinstance(x, dict) and graph_inputs.EDGE_LABEL_INDEX in x:
            y = np.ones((1, np.shape(x[graph_inputs.EDGE_LABEL_INDEX])[-1]), "float32")
        return super().fit(x, y, *args, **kwargs)

    def gradient_groups(self):
        return list(self.convs)

    def local_log_names(self):
        return [f"layer_{i}_loss" for i in range(self.num_layers)]

    def local_grads(self, trainable_values, non_trainable_values, x, y, sample_weight):
        tv, ntv = trainable_values, non_trainable_values
        features, edge_index, weight, _ = ForwardGNNModel.unpack(x)
        positives = self._candidates(x)
        num_positive = positives.shape[1]
        if y is None:
            pos_weight = ops.ones((num_positive,), dtype=features.dtype)
        else:
            pos_weight = ops.cast(ops.reshape(y, (-1,)), features.dtype)
        negatives = fg.sample_negative_edges(
            self.step_seed(ntv), features.shape[0], num_positive * self.num_negatives
        )
        neg_weight = ops.ones((negatives.shape[1],), dtype=features.dtype)
        grads = [ops.zeros_like(v) for v in tv]
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        logs = {}
        h = features
        for i, conv in enumerate(self.convs):
            state = layer_state(self, i)
            if state == "skip":
                logs[f"layer_{i}_loss"] = ops.convert_to_tensor(0.0, dtype=loss_dtype())
                continue
            t_idx = self.variable_indices(conv, trainable=True)
            n_idx = self.variable_indices(conv, trainable=False)
            params, conv_ntv = self.gather(tv, t_idx), self.gather(ntv, n_idx)

            def layer_loss(params, inputs):
                z, _ = conv.stateless_call(params, conv_ntv, inputs, edge_index, weight)
                pos = fg.link_logits(fg.edge_products(z, positives), self.rule, self.threshold)
                neg = fg.link_logits(fg.edge_products(z, negatives), self.rule, self.threshold)
                pos_loss = fg.binary_cross_entropy_with_logits(pos, 1.0)
                neg_loss = fg.binary_cross_entropy_with_logits(neg, 0.0)
                if self.rule == "ff":
                    loss = fg.masked_mean(pos_loss, pos_weight) + ops.mean(neg_loss)
                else:
                    loss = fg.masked_mean(
                        ops.concatenate([pos_loss, neg_loss]),
                        ops.concatenate([pos_weight, neg_weight]),
                    )
                return loss, z

            if state == "forward":
                h, _ = conv.stateless_call(params, conv_ntv, sf.row_normalize(h), edge_index, weight)
                h = backend.stop_gradient(h)
                loss = ops.convert_to_tensor(0.0, dtype=loss_dtype())
            else:
                (loss, h), layer_grads = backend.value_and_grad(layer_loss, has_aux=True)(
                    params, sf.row_normalize(h)
                )
                grads = self.scatter(grads, t_idx, layer_grads)
            total = total + ops.cast(loss, loss_dtype())
            logs[f"layer_{i}_loss"] = loss
        return grads, ntv, total, None, logs

    def evaluation_loss(self, tv, ntv, x, y, y_pred, sample_weight):
        """Binary cross-entropy of the link probabilities (0 without `y`)."""
        if y is None:
            return ops.convert_to_tensor(0.0)
        p = ops.clip(ops.reshape(y_pred, (-1,)), 1e-7, 1 - 1e-7)
        t = ops.cast(ops.reshape(y, (-1,)), p.dtype)
        return ops.mean(-(t * ops.log(p) + (1 - t) * ops.log(1 - p)))

    def validate_data(self, x, y=None, sample_weight=None):
        graph_inputs.validate_graph_inputs(x)
        if graph_inputs.EDGE_LABEL_INDEX not in x:
            self._candidates(x)
        if y is not None:
            count = np.asarray(x[graph_inputs.EDGE_LABEL_INDEX]).shape[-1]
            y = np.asarray(y)
            if y.size != count or not np.all((y == 0) | (y == 1)):
                raise ValueError(
                    f"Link labels must be 0/1, one per candidate edge ({count}). "
                    f"Received: labels of shape {y.shape}."
                )

    def validate_shapes(self, x, y=None):
        self._candidates(x)

    def get_config(self):
        config = super().get_config()
        config.update({
            "conv": self.conv, "rule": self.rule, "num_layers": self.num_layers,
            "units": self.units, "heads": self.heads, "threshold": self.threshold,
            "num_negatives": self.num_negatives,
        })
        return config
