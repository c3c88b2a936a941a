"""Benchmark rules of the Forward-Forward family: single forward (SF),
top-down SF, and physical FF on a simulated black box."""

import keras
import numpy as np

from keras_local.benchmark.registry import register_rule
from keras_local.benchmark.rule_building import compile_rule
from keras_local.benchmark.rule_building import mlp_layers
from keras_local.layers.black_box import BlackBox
from keras_local.layers.simulated_physical_system import SimulatedPhysicalSystem
from keras_local.models.physical_forward_forward_model import PhysicalForwardForwardModel
from keras_local.models.single_forward_model import SingleForwardModel


def _flat(spec, name):
    if len(spec.input_shape) != 1:
        raise ValueError(
            f"The {name} benchmark needs flat inputs. Received: "
            f"input_shape={spec.input_shape} for {spec.dataset}."
        )


@register_rule("single_forward")
def build_single_forward(spec):
    _flat(spec, "single-forward")
    return compile_rule(SingleForwardModel(
        mlp_layers(spec), spec.num_classes, temperature=0.1, seed=spec.seed
    ), spec, loss=False)


@register_rule("single_forward_topdown")
def build_single_forward_topdown(spec):
    _flat(spec, "top-down single-forward")
    return compile_rule(SingleForwardModel(
        mlp_layers(spec), spec.num_classes, rule="sf_topdown",
        temperature=0.1, seed=spec.seed,
    ), spec, loss=False)


def _physical(spec, drift):
    _flat(spec, "physical Forward-Forward")
    dim = int(np.prod(spec.input_shape))
    boxes, layers = [], []
    for i, units in enumerate(spec.hidden_units):
        boxes.append(BlackBox(SimulatedPhysicalSystem(
            dim, 1000, noise=0.02, drift=drift, seed=spec.seed + i
        )))
        layers.append(keras.layers.Dense(units, activation="relu"))
        dim = units
    return compile_rule(PhysicalForwardForwardModel(
        boxes, layers, spec.num_classes, measurement_normalization="layer",
        label_scale=5.0, seed=spec.seed,
    ), spec, loss=False)


@register_rule("physical_forward_forward")
def build_physical_forward_forward(spec):
    return _physical(spec, drift=0.0)


@register_rule("physical_forward_forward_drift")
def build_physical_forward_forward_drift(spec):
    return _physical(spec, drift=1e-4)
