"""Zeroth-order rules for the benchmark: MeZO (ZO-SGD), ZO-Adam and the
forward gradient, on the shared MLP."""

import keras

from keras_local.benchmark.benchmark_spec import scale_learning_rate
from keras_local.benchmark.registry import register_rule
from keras_local.benchmark.rule_building import compile_rule
from keras_local.benchmark.rule_building import mlp_classifier
from keras_local.models.zeroth_order_model import ZerothOrderModel


def _build(spec, optimizer, **kwargs):
    model = ZerothOrderModel(mlp_classifier(spec), seed=spec.seed, **kwargs)
    return compile_rule(model, spec, optimizer=optimizer)


@register_rule("zo_sgd")
def build_zo_sgd(spec):
    """MeZO: two-sided SPSA, one query, plain SGD (the benchmark's
    `learning_rate` is meant for Adam; ZO-SGD uses 10x it)."""
    return _build(spec, keras.optimizers.SGD(scale_learning_rate(spec.learning_rate, 10)),
                  epsilon=1e-3)


@register_rule("zo_adam")
def build_zo_adam(spec):
    return _build(spec, keras.optimizers.Adam(spec.learning_rate),
                  epsilon=1e-3)


@register_rule("forward_gradient")
def build_forward_gradient(spec):
    return _build(spec, keras.optimizers.Adam(spec.learning_rate),
                  estimator="forward_gradient")
