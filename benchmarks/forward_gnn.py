"""ForwardGNN benchmarks: node classification, link prediction, memory.

Usage (any backend for the first two; JAX for memory):

    python benchmarks/forward_gnn.py node --datasets cora citeseer photo \
        --convs gcn sage gat --rules ff_la ff_vn sf sf_topdown backprop \
        --seeds 0 1 2 3 4 --epochs 200
    python benchmarks/forward_gnn.py link --datasets cora citeseer \
        --convs gcn --rules ff sf backprop --seeds 0 1 2
    KERAS_BACKEND=jax python benchmarks/forward_gnn.py memory --depths 1 2 3 4 8

Node classification: full-graph training on the public Planetoid split
(Cora, CiteSeer) or the fixed-seed 60/20/20 stratified split (Amazon
Photo); every model is trained for `--epochs` epochs, the weights with the
best validation accuracy (checked every epoch) are restored and the test
accuracy reported (mean +- std over seeds). Link prediction: 85/5/10
edge split (`link_split`), ROC-AUC on the test edges against as many
non-edges, best-validation epoch. Memory: XLA temp bytes of the compiled
train step (`backend.train_step_memory`) on Cora, forward variants vs the
backprop GNN of the same layers, same graph.
"""

import argparse
import json
import time

import keras
import numpy as np

from keras_local import backend
from keras_local import datasets
from keras_local.datasets import graph_inputs
from keras_local.models.forward_gnn_link_model import ForwardGNNLinkModel
from keras_local.models.forward_gnn_model import ForwardGNNModel
from keras_local.models.gnn_model import GNNModel

LOADERS = {
    "cora": datasets.load_cora,
    "citeseer": datasets.load_citeseer,
    "photo": datasets.load_amazon_photo,
    "computers": datasets.load_amazon_computers,
}


def node_model(rule, conv, data, args, seed):
    keras.utils.set_random_seed(seed)
    if rule == "backprop":
        model = GNNModel(data.num_classes, conv=conv, num_layers=args.layers,
                         units=args.units, dropout=args.dropout)
        model.compile(
            optimizer=keras.optimizers.Adam(args.lr),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=["accuracy"],
        )
        return model
    model = ForwardGNNModel(data.num_classes, conv=conv, rule=rule,
                            num_layers=args.layers, units=args.units, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(args.lr), weighted_metrics=["accuracy"])
    return model


def run_node(args):
    rows = []
    for name in args.datasets:
        data = LOADERS[name]()
        batches = graph_inputs.dataset_batches(data)
        (x, y, w), (xv, yv, wv), (xt, yt, wt) = batches["train"], batches["val"], batches["test"]
        for conv in args.convs:
            for rule in args.rules:
                scores, seconds = [], []
                for seed in args.seeds:
                    model = node_model(rule, conv, data, args, seed)
                    stop = keras.callbacks.EarlyStopping(
                        monitor="val_accuracy", mode="max", patience=args.patience,
                        restore_best_weights=True,
                    )
                    start = time.perf_counter()
                    history = model.fit(
                        x, y, sample_weight=w, batch_size=1, epochs=args.epochs,
                        validation_data=(xv, yv, wv), callbacks=[stop], verbose=0,
                    )
                    seconds.append((time.perf_counter() - start) / len(history.history["loss"]))
                    scores.append(model.evaluate(
                        xt, yt, sample_weight=wt, verbose=0, return_dict=True
                    )["accuracy"] * 100)
                row = dict(task="node", dataset=name, conv=conv, rule=rule,
                           mean=float(np.mean(scores)), std=float(np.std(scores)),
                           seeds=len(scores), seconds_per_epoch=float(np.mean(seconds)))
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


class BackpropLinkModel(keras.Model):
    """Backprop baseline for link prediction: the GNN's embeddings, logit
    `sum(z_u * z_v)` of each candidate edge (benchmark helper)."""

    def __init__(self, conv, layers, units, **kwargs):
        super().__init__(**kwargs)
        self.gnn = GNNModel(None, conv=conv, num_layers=layers, units=units)

    def build(self, input_shape):
        self.gnn.build(input_shape)
        self.built = True

    def call(self, x, training=False):
        z = self.gnn.embed(x, training=training)
        pairs = keras.ops.cast(x[graph_inputs.EDGE_LABEL_INDEX], "int32")[0]
        logits = keras.ops.sum(keras.ops.take(z, pairs[0], axis=0) * keras.ops.take(z, pairs[1], axis=0), axis=-1)
        return keras.ops.expand_dims(keras.ops.sigmoid(logits), 0)


def run_link(args):
    rows = []
    for name in args.datasets:
        data = LOADERS[name]()
        for conv in args.convs:
            for rule in args.rules:
                scores, seconds = [], []
                for seed in args.seeds:
                    keras.utils.set_random_seed(seed)
                    split = graph_inputs.link_split(data.edge_index, data.num_nodes, seed=seed)
                    features = data.x
                    xv, yv = graph_inputs.link_batch(features, split["edge_index"], *split["val"])
                    xt, yt = graph_inputs.link_batch(features, split["edge_index"], *split["test"])
                    positives = split["train"][0]
                    start = time.perf_counter()
                    best, best_test, epochs = -1.0, 0.0, 0
                    if rule == "backprop":
                        model = BackpropLinkModel(conv, args.layers, args.units)
                        model.compile(keras.optimizers.Adam(args.lr), "binary_crossentropy",
                                      metrics=[keras.metrics.AUC(name="auc")])
                        rng = np.random.default_rng(seed)
                    else:
                        model = ForwardGNNLinkModel(conv=conv, rule=rule, num_layers=args.layers,
                                                    units=args.units, seed=seed)
                        model.compile(keras.optimizers.Adam(args.lr), metrics=[keras.metrics.AUC(name="auc")])
                        x, _ = graph_inputs.link_batch(features, split["edge_index"], positives)
                    wait = 0
                    for epoch in range(args.epochs):
                        if rule == "backprop":
                            negatives = rng.integers(0, data.num_nodes, size=positives.shape)
                            candidates = np.concatenate([positives, negatives], axis=1)
                            labels = np.concatenate([np.ones(positives.shape[1]), np.zeros(positives.shape[1])])
                            xb, yb = graph_inputs.link_batch(features, split["edge_index"], candidates, labels)
                            model.fit(xb, yb, batch_size=1, epochs=1, verbose=0)
                        else:
                            model.fit(x, batch_size=1, epochs=1, verbose=0)
                        epochs += 1
                        auc = model.evaluate(xv, yv, verbose=0, return_dict=True)["auc"]
                        if auc > best:
                            best, wait = auc, 0
                            best_test = model.evaluate(xt, yt, verbose=0, return_dict=True)["auc"]
                        else:
                            wait += 1
                            if wait > args.patience:
                                break
                    seconds.append((time.perf_counter() - start) / epochs)
                    scores.append(best_test * 100)
                row = dict(task="link", dataset=name, conv=conv, rule=rule,
                           mean=float(np.mean(scores)), std=float(np.std(scores)),
                           seeds=len(scores), seconds_per_epoch=float(np.mean(seconds)))
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def run_memory(args):
    if keras.backend.backend() != "jax":
        raise SystemExit("Run with KERAS_BACKEND=jax: the figure is XLA's compiled memory analysis.")
    data = LOADERS[args.datasets[0]]()
    x, y, w = graph_inputs.dataset_batches(data)["train"]
    rows = []
    for conv in args.convs:
        for depth in args.depths:
            args.layers = depth
            row = dict(task="memory", dataset=args.datasets[0], conv=conv, layers=depth)
            for rule in args.rules:
                model = node_model(rule, conv, data, args, 0)
                report = backend.train_step_memory(model, x, y, w)
                row[rule] = report.bytes
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["node", "link", "memory"])
    parser.add_argument("--datasets", nargs="+", default=["cora"])
    parser.add_argument("--convs", nargs="+", default=["gcn"])
    parser.add_argument("--rules", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=50)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3, 4, 8])
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--out", default=None, help="append JSON lines here")
    args = parser.parse_args()
    if args.rules is None:
        args.rules = (["ff", "sf", "backprop"] if args.task == "link"
                      else ["ff_la", "ff_vn", "sf", "sf_topdown", "backprop"])
    rows = {"node": run_node, "link": run_link, "memory": run_memory}[args.task](args)
    if args.out:
        with open(args.out, "a") as handle:
            for row in rows:
                handle.write(json.dumps({**row, "backend": keras.backend.backend()}) + "\n")


if __name__ == "__main__":
    main()
