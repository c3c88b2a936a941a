"""Target projection rules (DRTP, tpSGD) and their feedback-alignment
baselines (FA, DFA) for the benchmark."""

import keras

from keras_local.benchmark.registry import register_rule
from keras_local.benchmark.rule_building import compile_rule
from keras_local.benchmark.rule_building import mlp_layers
from keras_local.layers.feedback_alignment import FeedbackAlignment
from keras_local.models.direct_feedback_alignment_model import (
    DirectFeedbackAlignmentModel,
)
from keras_local.models.target_projection_model import TargetProjectionModel


def _blocks(spec, activation=None):
    """The registry's MLP (ReLU blocks), or the same widths with
    `activation`."""
    flatten = [keras.layers.Flatten()] if len(spec.input_shape) > 1 else []
    hidden = mlp_layers(spec)
    if activation is not None:
        hidden = [
            keras.layers.Dense(layer.units, activation=activation)
            for layer in hidden
        ]
    return flatten + hidden + [keras.layers.Dense(spec.num_classes)]


@register_rule("backprop_tanh", baseline="backprop_tanh")
def build_backprop_tanh(spec):
    """Plain backprop on DRTP's tanh blocks: its baseline."""
    model = keras.Sequential(
        [keras.Input(spec.input_shape)] + _blocks(spec, activation="tanh")
    )
    return compile_rule(model, spec)


@register_rule("drtp", baseline="backprop_tanh")
def build_drtp(spec):
    # DRTP's fixed modulatory signal needs a bounded nonlinearity (the
    # paper's tanh): on ReLU blocks it drives every unit with a negative
    # projected target to zero, where it stops learning (68.6% vs 94.6% for
    # backprop on 10k MNIST images, see benchmarks/results_target_projection.md).
    model = TargetProjectionModel(
        _blocks(spec, activation="tanh"), num_classes=spec.num_classes,
        rule="drtp", seed=spec.seed,
    )
    return compile_rule(model, spec)


@register_rule("tpsgd")
def build_tpsgd(spec):
    model = TargetProjectionModel(
        _blocks(spec), num_classes=spec.num_classes, rule="tpsgd",
        local_loss="mse", seed=spec.seed,
    )
    return compile_rule(model, spec)


@register_rule("dfa")
def build_dfa(spec):
    model = DirectFeedbackAlignmentModel(
        _blocks(spec), num_classes=spec.num_classes, seed=spec.seed
    )
    return compile_rule(model, spec)


@register_rule("fa")
def build_fa(spec):
    layers = []
    for i, layer in enumerate(_blocks(spec)):
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            layer = FeedbackAlignment(layer, seed=spec.seed * 1009 + i)
        layers.append(layer)
    model = keras.Sequential([keras.Input(spec.input_shape)] + layers)
    return compile_rule(model, spec)
