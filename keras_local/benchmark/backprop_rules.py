"""The baseline: the same layers trained end to end by `fit`."""

from keras_local.benchmark.registry import register_rule
from keras_local.benchmark.rule_building import compile_rule
from keras_local.benchmark.rule_building import mlp_classifier


@register_rule("backprop")
def build_backprop(spec):
    return compile_rule(mlp_classifier(spec), spec)
