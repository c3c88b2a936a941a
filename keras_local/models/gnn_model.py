import keras
from keras import ops

from keras_local.api_export import keras_local_export
from keras_local.models.forward_gnn_model import ForwardGNNModel
from keras_local.models.forward_gnn_model import _feature_size
from keras_local.models.forward_gnn_model import check_choice
from keras_local.models.forward_gnn_model import make_conv
from keras_local.rules import forward_gnn as fg


@keras_local_export
class GNNModel(keras.Model):
    """A plain graph neural network trained with backprop: the baseline of
    `ForwardGNNModel` and `ForwardGNNLinkModel`.

    The same graph-convolution layers (`num_layers` ReLU convolutions of
    `units` features) followed by a linear classifier `Dense(num_classes)`
    (node classification) or, with `num_classes=None`, the node
    embeddings of the last layer (link prediction). It takes the same
    full-graph dict inputs (`graph_batch`), and is an ordinary Keras model:
    compile it with a loss and train it end to end.

    Args:
        num_classes: int or `None`. Defaults to `None`.
        conv: `"gcn"`, `"sage"` or `"gat"`. Defaults to `"gcn"`.
        num_layers: int. Defaults to `2`.
        units: int. Defaults to `128`.
        heads: int, GAT heads. Defaults to `4`.
        dropout: float, dropout rate on each layer's input. Defaults to
            `0.0`.
        weight_decay: float, L2 penalty `weight_decay / 2 * sum(w^2)` over
            all trainable weights added to the loss, i.e. PyTorch's coupled
            `Adam(weight_decay=...)` of the reference (`5e-4`). Defaults to
            `0.0`.
        **kwargs: passed to `keras.Model`.

    Returns:
        A `keras.Model`: `(1, N, num_classes)` logits, or `(1, N, units)`
        embeddings.

    Example:

    ```python
    graph = keras_local.datasets.load_cora()
    x, y, train_mask = keras_local.datasets.graph_batch(
        graph.x, graph.edge_index, graph.y, mask=graph.train_index)
    model = keras_local.GNNModel(num_classes=7, conv="gcn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), weighted_metrics=["accuracy"])
    model.fit(x, y, sample_weight=train_mask, batch_size=1, epochs=100)
    ```

    References:
        - Kipf & Welling, ICLR 2017; Hamilton et al., NeurIPS 2017;
          Velickovic et al., ICLR 2018.
    """

    def __init__(self, num_classes=None, conv="gcn", num_layers=2, units=128,
                 heads=4, dropout=0.0, weight_decay=0.0, **kwargs):
        super().__init__(**kwargs)
        if float(weight_decay) < 0:
            raise ValueError(
                f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay!r}"
            )
        check_choice("conv", conv, fg.CONVS)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.conv = conv
        self.num_layers = int(num_layers)
        self.units = int(units)
        self.heads = int(heads)
        self.dropout = float(dropout)
        self.weight_decay = float(weight_decay)
        self.convs = [make_conv(conv, self.units, self.heads, name=f"{conv}_conv_{i}")
                      for i in range(self.num_layers)]
        self.dropout_layer = keras.layers.Dropout(self.dropout)
        self.classifier = (
            keras.layers.Dense(self.num_classes, name="classifier")
            if self.num_classes is not None else None
        )

    def build(self, input_shape):
        width = _feature_size(input_shape)
        for conv in self.convs:
            conv.build((None, width))
            width = self.units
        if self.classifier is not None:
            self.classifier.build((None, width))
        self.built = True

    def embed(self, x, training=False):
        features, edge_index, weight, _ = ForwardGNNModel.unpack(x)
        h = features
        for conv in self.convs:
            h = conv(self.dropout_layer(h, training=training), edge_index, weight)
        return h

    def call(self, x, training=False):
        h = self.embed(x, training=training)
        if self.classifier is not None:
            h = self.classifier(h)
        return ops.expand_dims(h, 0)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        if self.weight_decay and training:
            penalty = sum(ops.sum(ops.square(w)) for w in self.trainable_weights)
            loss = loss + ops.cast(0.5 * self.weight_decay, loss.dtype) * ops.cast(penalty, loss.dtype)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes, "conv": self.conv,
            "num_layers": self.num_layers, "units": self.units,
            "heads": self.heads, "dropout": self.dropout,
            "weight_decay": self.weight_decay,
        })
        return config
