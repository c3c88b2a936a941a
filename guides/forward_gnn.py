"""
Title: Forward learning of graph neural networks
Author: keras_local contributors
Date created: 2026/11/27
Last modified: 2026/11/27
Description: Train GCN, GraphSAGE and GAT layers without backprop (ForwardGNN), with graphs read from TF-GNN GraphTensors.
"""

"""
## Introduction

A graph neural network trained with backprop sends the error of its
output back through every message-passing layer. *ForwardGNN*
(Park et al., "Forward Learning of Graph Neural Networks", ICLR 2024)
trains each layer on its own instead, in the spirit of Hinton's
Forward-Forward algorithm:

- **FF+LA** (label appending): each training node's one-hot label is
  appended to its features; a layer learns high *goodness* (sum of squared
  activities) with the true label and low goodness with a wrong one.
- **FF+VN** (virtual nodes): one virtual node per class is added to the
  graph, and each training node is linked to the virtual node of its class
  (positive graph) or of a wrong class (negative graph).
- **SF** (single forward): the virtual-node graph, one forward pass, no
  negative data; each layer learns to make a node's embedding most similar
  to its class's virtual node (a softmax over the classes).
- **SF with top-down signals**: the same, with the layer's loss taking
  the (detached) embeddings of the layers above into account.

`keras_local.models.forward_gnn_model.ForwardGNNModel` implements all four
on the JAX, TensorFlow and PyTorch backends, over three graph layers written
with `keras.ops`: `GCNConv`, `SAGEConv` and `GATConv`.
"""

"""
## Setup
"""

import os

import keras

from keras_local.datasets import load_cora
from keras_local.datasets import graph_inputs
from keras_local.models.forward_gnn_link_model import ForwardGNNLinkModel
from keras_local.models.forward_gnn_model import ForwardGNNModel
from keras_local.models.gnn_model import GNNModel

SHRINK = os.environ.get("KERAS_LOCAL_SHRINK") == "1"
EPOCHS = 15 if SHRINK else 200
UNITS = 32 if SHRINK else 128
keras.utils.set_random_seed(0)

"""
## Loading a graph

`load_cora()` returns the Cora citation graph (2708 papers, 7 subjects) with
the public Planetoid split as NumPy arrays: node features, labels, an
`edge_index` of shape `(2, num_edges)` (sources, then targets) and the
train/validation/test node indices.
"""

cora = load_cora()
print(cora)

"""
### From a TF-GNN GraphTensor

Graph data often comes as a `tensorflow_gnn.GraphTensor` (e.g. parsed from
`tf.train.Example`s with a graph schema). TF-GNN 1.x only imports with Keras
2 (`pip install tensorflow-gnn tf-keras` and `TF_USE_LEGACY_KERAS=1`, which
keras_local sets for you), and its own layers are Keras 2 layers that cannot
be used inside a Keras 3 model. We therefore use TF-GNN for the *data* only:
`graph_inputs.from_graph_tensor` picks one node set and one edge set by
name and reads the features, labels and adjacency out as NumPy arrays, which
feed a model on any backend.

Here we put Cora into a GraphTensor, write it to a `tf.train.Example` and
parse it back, as a data pipeline would, then read it out.
"""

try:
    from keras_local.backend.graph_tensor import arrays_to_graph_tensor
    from keras_local.backend.graph_tensor import import_tensorflow_gnn

    tfgnn = import_tensorflow_gnn()
    graph = arrays_to_graph_tensor(
        cora.x, cora.edge_index, node_set="paper", edge_set="cites",
        feature="words", labels=cora.y, label="subject",
    )
    if not SHRINK:  # Serialising all of Cora takes a while.
        example = tfgnn.write_example(graph)
        graph = tfgnn.parse_single_example(
            graph.spec, example.SerializeToString()
        )
    x_train, y_train, train_mask = graph_inputs.from_graph_tensor(
        graph, node_set="paper", edge_set="cites", feature="words",
        label="subject", mask=cora.train_index, known_mask=cora.train_index,
    )
    print("Read from a GraphTensor:", {k: v.shape for k, v in x_train.items()})
except ImportError as missing:
    print(f"TF-GNN is not installed ({missing}); using the arrays directly.")
    x_train, y_train, train_mask = graph_inputs.graph_batch(
        cora.x, cora.edge_index, cora.y, mask=cora.train_index,
        known_mask=cora.train_index,
    )

"""
## Full-graph batches

A graph is one sample: `graph_batch` adds a leading axis of size 1 to every
array, so Keras's usual data adapters feed it with `batch_size=1`. The node
labels are `y`, and the split's node mask is the `sample_weight`: only the
training nodes contribute to the losses. `known_labels` (here, the training
labels) are the labels the model may see when it predicts: the virtual-node
rules link those nodes to their class's virtual node, as the reference
implementation does. Validation and test batches differ in their mask and
in their `query_mask`, the nodes being evaluated: the Forward-Forward rules
score a node by running the graph once per candidate class, and give the
candidate to these nodes only (the other unlabelled nodes keep the uniform
label row, as in training), which is how the reference evaluates. Because
the mask is a sample weight, compile the accuracy as a *weighted* metric
(`weighted_metrics=["accuracy"]`): Keras applies sample weights to those
only, and a plain `metrics=["accuracy"]` would count every node of the
graph.
"""

batches = graph_inputs.dataset_batches(cora)
x_val, y_val, val_mask = batches["val"]
x_test, y_test, test_mask = batches["test"]

"""
## Single-forward training of a GCN

Each `GCNConv` layer is trained on its own softmax-over-classes loss, on the
detached, L2-normalised output of the layer below. The prediction sums the
class probabilities of all layers.
"""

model = ForwardGNNModel(
    num_classes=cora.num_classes, conv="gcn", rule="sf", num_layers=2,
    units=UNITS, seed=0,
)
model.compile(optimizer=keras.optimizers.Adam(1e-3 if not SHRINK else 1e-2),
              weighted_metrics=["accuracy"])
model.fit(
    x_train, y_train, sample_weight=train_mask, batch_size=1, epochs=EPOCHS,
    validation_data=(x_val, y_val, val_mask), verbose=0,
)
sf_accuracy = model.evaluate(
    x_test, y_test, sample_weight=test_mask, verbose=0, return_dict=True
)["accuracy"]
print(f"SF-GCN test accuracy: {sf_accuracy:.3f}")

"""
## The other rules and the backprop baseline

The same layers, trained with the Forward-Forward rules, and a plain Keras
model of the same layers (plus a linear classifier) trained end to end.
"""

results = {"sf": sf_accuracy}
# The Forward-Forward rules need many more epochs than SF (hundreds on Cora).
for rule in () if SHRINK else ("ff_la", "ff_vn", "sf_topdown"):
    forward = ForwardGNNModel(
        num_classes=cora.num_classes, conv="gcn", rule=rule, num_layers=2,
        units=UNITS, seed=0,
    )
    forward.compile(optimizer=keras.optimizers.Adam(1e-2), weighted_metrics=["accuracy"])
    forward.fit(x_train, y_train, sample_weight=train_mask, batch_size=1,
                epochs=EPOCHS, verbose=0)
    results[rule] = forward.evaluate(
        x_test, y_test, sample_weight=test_mask, verbose=0, return_dict=True
    )["accuracy"]

baseline = GNNModel(num_classes=cora.num_classes, conv="gcn", units=UNITS,
                    dropout=0.5)
baseline.compile(
    optimizer=keras.optimizers.Adam(1e-2),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    weighted_metrics=["accuracy"],
)
baseline.fit(x_train, y_train, sample_weight=train_mask, batch_size=1,
             epochs=EPOCHS, verbose=0)
results["backprop"] = baseline.evaluate(
    x_test, y_test, sample_weight=test_mask, verbose=0, return_dict=True
)["accuracy"]
for name, accuracy in results.items():
    print(f"{name:>10}: {accuracy:.3f}")

"""
## Link prediction

`ForwardGNNLinkModel` scores an edge `(u, v)` from `z_u * z_v` at every
layer and trains each layer on positive edges against negative edges drawn
afresh in every step. `link_split` holds out validation and test edges
(with as many non-edges) and keeps the training edges as the
message-passing graph.
"""

split = graph_inputs.link_split(cora.edge_index, cora.num_nodes, seed=0)
x_links, _ = graph_inputs.link_batch(cora.x, split["edge_index"], split["train"][0])
x_links_test, y_links_test = graph_inputs.link_batch(
    cora.x, split["edge_index"], *split["test"]
)
links = ForwardGNNLinkModel(conv="gcn", rule="sf", units=UNITS, seed=0)
links.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=[keras.metrics.AUC(name="auc")])
links.fit(x_links, batch_size=1, epochs=EPOCHS, verbose=0)
auc = links.evaluate(x_links_test, y_links_test, verbose=0, return_dict=True)["auc"]
print(f"SF-GCN link prediction test ROC-AUC: {auc:.3f}")

"""
The reference trains the layers one after the other: the first to its own
early stop, then the second on the first's frozen output, and so on.
`set_active_layer(i)` (on `ForwardGNNModel` too) makes `fit` update layer
`i` only, the layers below running forward, and `predict` use layers
`0..i`; it also zeroes the optimizer's state, so each layer starts with a
fresh optimizer, as in the reference. Here with the Forward-Forward link
rule, whose logit is `sum((z_u * z_v)^2) - threshold`:
"""

layerwise = ForwardGNNLinkModel(conv="gcn", rule="ff", units=UNITS, seed=0)
layerwise.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=[keras.metrics.AUC(name="auc")])
for layer in range(layerwise.num_layers):
    layerwise.set_active_layer(layer)
    layerwise.fit(x_links, batch_size=1, epochs=EPOCHS, verbose=0)
auc = layerwise.evaluate(x_links_test, y_links_test, verbose=0, return_dict=True)["auc"]
print(f"FF-GCN link prediction (layer-wise) test ROC-AUC: {auc:.3f}")

"""
## Conclusion

ForwardGNN trains every graph-convolution layer on a local loss: no
gradient crosses a layer, so the layers of a deep GNN can be trained with
the memory of one. The single-forward rule needs no negative graphs and,
on Cora, comes close to backprop. See `benchmarks/forward_gnn.py` for the
comparison on Cora, CiteSeer and Amazon Photo with GCN, GraphSAGE and GAT,
for link prediction, and for the memory as the depth grows.
"""
