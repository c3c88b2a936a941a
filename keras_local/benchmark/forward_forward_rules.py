"""Forward-Forward rules for the benchmark."""

from keras_local.benchmark.registry import register_rule
from keras_local.benchmark.rule_building import compile_rule
from keras_local.benchmark.rule_building import mlp_layers
from keras_local.models.forward_forward_model import ForwardForwardModel


def _build(spec, **kwargs):
    if len(spec.input_shape) != 1:
        raise ValueError(
            "The dense Forward-Forward benchmark needs flat inputs. "
            f"Received: input_shape={spec.input_shape} for {spec.dataset}."
        )
    model = ForwardForwardModel(
        mlp_layers(spec), num_classes=spec.num_classes, seed=spec.seed, **kwargs
    )
    return compile_rule(model, spec, loss=False)


@register_rule("forward_forward")
def build_forward_forward(spec):
    return _build(spec)


@register_rule("forward_forward_symba_hard")
def build_forward_forward_symba_hard(spec):
    return _build(spec, loss="symba", negative_labels="hard", label_scale=3.0)
