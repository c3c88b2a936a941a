"""ForwardGNN rules for the benchmark (graph data sets: full-graph batches
from `keras_local.datasets.graph_inputs.dataset_batches`, `batch_size=1`,
the split mask as `sample_weight`).

Registered: `forward_gnn_{conv}_{rule}` for conv in gcn/sage/gat and rule in
ff_la/ff_vn/sf/sf_topdown, and `backprop_gnn_{conv}`. The width and depth
come from `spec.hidden_units` (all layers take `hidden_units[0]` units).
Accuracy is compiled as a weighted metric so that the mask counts.
"""

from keras_local.benchmark.registry import register_rule
from keras_local.benchmark.rule_building import compile_rule
from keras_local.models.forward_gnn_model import ForwardGNNModel
from keras_local.models.gnn_model import GNNModel
from keras_local.rules.forward_gnn import CONVS
from keras_local.rules.forward_gnn import NODE_RULES


def _forward(conv, rule):
    def build(spec):
        model = ForwardGNNModel(
            spec.num_classes, conv=conv, rule=rule,
            num_layers=len(spec.hidden_units), units=int(spec.hidden_units[0]),
            seed=spec.seed,
        )
        return compile_rule(model, spec, loss=False, weighted=True)

    return build


def _backprop(conv):
    def build(spec):
        model = GNNModel(
            spec.num_classes, conv=conv, num_layers=len(spec.hidden_units),
            units=int(spec.hidden_units[0]), dropout=0.5,
        )
        return compile_rule(model, spec, weighted=True)

    return build


for _conv in CONVS:
    register_rule(f"backprop_gnn_{_conv}", baseline=f"backprop_gnn_{_conv}")(
        _backprop(_conv))
    for _rule in NODE_RULES:
        register_rule(f"forward_gnn_{_conv}_{_rule}",
                      baseline=f"backprop_gnn_{_conv}")(_forward(_conv, _rule))
