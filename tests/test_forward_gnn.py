"""ForwardGNN: graph layers, graph inputs, TF-GNN adapter, the four node
rules and the link-prediction rules, on every backend."""

import os
import pathlib
import runpy

import keras
import numpy as np
import pytest

from keras_local import backend
from keras_local.layers.gat_conv import GATConv
from keras_local.layers.gcn_conv import GCNConv
from keras_local.layers.sage_conv import SAGEConv
from keras_local.rules import forward_gnn as fg
from tests.conftest import BACKEND
from tests.conftest import require_data

ROOT = pathlib.Path(__file__).resolve().parent.parent

# A small directed graph: node 4 is isolated, node 2 has a self loop of
# weight 2 (when weighted), 0 <-> 1 appears twice as a multi-edge.
EDGES = np.array(
    [[0, 1, 1, 2, 2, 3, 0, 3],
     [1, 0, 2, 1, 2, 0, 1, 2]], dtype="int32"
)
WEIGHTS = np.array([1.0, 0.5, 1.5, 1.0, 2.0, 1.0, 1.0, 0.0], dtype="float32")
NUM_NODES = 5


def _features(rng, features=3):
    return rng.normal(size=(NUM_NODES, features)).astype("float32")


# ---------------------------------------------------------------------- #
# NumPy references, written from the definitions (loops over edges).
# ---------------------------------------------------------------------- #
def gcn_reference(x, edges, w, kernel, bias):
    n = x.shape[0]
    adjacency = np.zeros((n, n))  # adjacency[target, source]
    loops = np.zeros(n)
    has_loop = np.zeros(n, bool)
    for (s, t), weight in zip(edges.T, w):
        if s == t:
            loops[t] += weight
            has_loop[t] = True
        else:
            adjacency[t, s] += weight
    loops[~has_loop] = 1.0
    adjacency += np.diag(loops)
    degree = adjacency.sum(1)
    d = np.where(degree > 0, degree ** -0.5, 0.0)
    return (d[:, None] * adjacency * d[None, :]) @ (x @ kernel) + bias


def sage_reference(x, edges, w, neighbor_kernel, self_kernel, bias):
    n = x.shape[0]
    mean = np.zeros_like(x, dtype="float64")
    for i in range(n):
        incoming = [(s, weight) for (s, t), weight in zip(edges.T, w) if t == i and weight > 0]
        if incoming:
            total = sum(weight for _, weight in incoming)
            mean[i] = sum(weight * x[s] for s, weight in incoming) / total
    return mean @ neighbor_kernel + bias + x @ self_kernel


def gat_reference(x, edges, w, kernel, att_s, att_t, bias, heads, slope=0.2):
    n = x.shape[0]
    per_head = kernel.shape[1] // heads
    z = (x @ kernel).reshape(n, heads, per_head)
    pairs = [(s, t, weight) for (s, t), weight in zip(edges.T, w) if s != t]
    pairs += [(i, i, 1.0) for i in range(n)]
    out = np.zeros((n, heads, per_head))
    for i in range(n):
        incoming = [(s, weight) for s, t, weight in pairs if t == i and weight > 0]
        for k in range(heads):
            e = np.array([z[s, k] @ att_s[k] + z[i, k] @ att_t[k] for s, _ in incoming])
            e = np.where(e > 0, e, slope * e)
            a = np.array([weight for _, weight in incoming]) * np.exp(e - e.max())
            a = a / a.sum()
            out[i, k] = sum(a_j * z[s, k] for a_j, (s, _) in zip(a, incoming))
    return out.reshape(n, -1) + bias


def _numpy(v):
    return keras.ops.convert_to_numpy(v)


@pytest.mark.parametrize("weighted", [False, True])
def test_gcn_conv_matches_numpy(rng, weighted):
    x = _features(rng)
    layer = GCNConv(4, bias_initializer="random_normal")
    w = WEIGHTS if weighted else None
    out = layer(x, EDGES, w)
    expected = gcn_reference(
        x, EDGES, WEIGHTS if weighted else np.ones(EDGES.shape[1]),
        _numpy(layer.kernel), _numpy(layer.bias),
    )
    np.testing.assert_allclose(_numpy(out), expected, rtol=1e-5, atol=1e-5)
    # The isolated node keeps its own transformed features.
    np.testing.assert_allclose(
        _numpy(out)[4], x[4] @ _numpy(layer.kernel) + _numpy(layer.bias), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_sage_conv_matches_numpy(rng, weighted):
    x = _features(rng)
    layer = SAGEConv(4, bias_initializer="random_normal")
    out = layer(x, EDGES, WEIGHTS if weighted else None)
    expected = sage_reference(
        x, EDGES, WEIGHTS if weighted else np.ones(EDGES.shape[1]),
        _numpy(layer.neighbor_kernel), _numpy(layer.self_kernel), _numpy(layer.bias),
    )
    np.testing.assert_allclose(_numpy(out), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_gat_conv_matches_numpy(rng, weighted):
    x = _features(rng)
    layer = GATConv(6, heads=2, bias_initializer="random_normal")
    out = layer(x, EDGES, WEIGHTS if weighted else None)
    expected = gat_reference(
        x, EDGES, WEIGHTS if weighted else np.ones(EDGES.shape[1]),
        _numpy(layer.kernel), _numpy(layer.attention_source),
        _numpy(layer.attention_target), _numpy(layer.bias), heads=2,
    )
    np.testing.assert_allclose(_numpy(out), expected, rtol=1e-5, atol=1e-5)


def test_graph_layers_jit_and_gradients(rng):
    # Differentiable and traceable: gradients of a sum exist and are finite.
    x = _features(rng)
    for layer in (GCNConv(4), SAGEConv(4), GATConv(4, heads=2)):
        layer.build(x.shape)

        def loss(params, x):
            out, _ = layer.stateless_call(params, [], x, EDGES)
            return keras.ops.sum(keras.ops.square(out))

        value, grads = backend.value_and_grad(loss)(
            [v.value for v in layer.trainable_variables], keras.ops.convert_to_tensor(x)
        )
        assert np.isfinite(float(value))
        assert all(np.all(np.isfinite(_numpy(g))) for g in grads)
        assert any(np.abs(_numpy(g)).sum() > 0 for g in grads)


def test_graph_layer_config_round_trip():
    for layer in (GCNConv(4, activation="relu"), SAGEConv(3), GATConv(8, heads=4)):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="heads"):
        GATConv(6, heads=4)
