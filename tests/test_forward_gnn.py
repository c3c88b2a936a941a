"""ForwardGNN: graph layers, graph inputs, TF-GNN adapter, the four node
rules and the link-prediction rules, on every backend."""

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
from tests.conftest import require_data
from tests.conftest import UNDER_CI

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


@pytest.mark.parametrize("layer_cls", [GCNConv, SAGEConv, GATConv])
def test_shared_label_projection_equals_the_direct_one(rng, layer_cls):
    """FF+LA's first layer projects `[x, 0]` once for every label block;
    each block's projection equals projecting its own row-normalised
    `[x, r]`, and propagating it equals calling the layer (a row of zero
    features included)."""
    x = _features(rng, features=6)
    x[3] = 0.0
    kwargs = {"heads": 2} if layer_cls is GATConv else {}
    layer = layer_cls(4, activation="relu", **kwargs)
    t = keras.ops.convert_to_tensor
    mask = np.array([1, 1, 0, 1, 0], "float32")
    blocks = [fg.label_rows(t(labels), t(mask), 3) for labels in ([0, 1, 2, 0, 1], [2, 2, 0, 1, 0])]
    layer(t(np.concatenate([x, _numpy(blocks[0])], -1)), EDGES)  # builds it
    shared = fg.appended_label_projections(layer.project, t(x), blocks)
    for rows, projected in zip(blocks, shared):
        h = sf.row_normalize(t(np.concatenate([x, _numpy(rows)], -1)))
        np.testing.assert_allclose(_numpy(projected), _numpy(layer.project(h)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            _numpy(layer.propagate(projected, EDGES, WEIGHTS)),
            _numpy(layer(h, EDGES, WEIGHTS)), rtol=1e-5, atol=1e-6,
        )


def test_graph_layer_config_round_trip():
    layers = (
        GCNConv(4, activation="relu", add_self_loops=False),
        SAGEConv(3, use_bias=False),
        GATConv(8, heads=4, negative_slope=0.1),
    )
    for layer in layers:
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    # The shared part and each layer's own arguments both survive.
    assert layers[0].get_config()["add_self_loops"] is False
    assert layers[1].get_config()["use_bias"] is False
    assert (layers[2].get_config()["heads"], layers[2].get_config()["negative_slope"]) == (4, 0.1)
    with pytest.raises(ValueError, match="heads"):
        GATConv(6, heads=4)


@pytest.mark.parametrize("layer_cls", [GCNConv, SAGEConv, GATConv])
def test_graph_layers_refuse_bad_units_and_inputs(layer_cls):
    with pytest.raises(ValueError, match="`units` must be a positive int. Received: units=0"):
        layer_cls(0)
    layer = layer_cls(4, **({"heads": 2} if layer_cls is GATConv else {}))
    with pytest.raises(ValueError, match=r"\(num_nodes, features\).*Received: node features of shape \(2, 3, 4\)"):
        layer.build((2, 3, 4))


def test_graph_conv_subclass_gets_projection_bias_and_activation(rng):
    """A new message-passing layer needs only `build` and `propagate`:
    `GraphConv` gives it `project` (`x W`), the bias, the activation, the
    call and the config."""
    from keras_local.layers.graph_conv import GraphConv

    class SumConv(GraphConv):
        def build(self, input_shape):
            self.kernel = self.add_weight(
                shape=(self.node_feature_size(input_shape), self.units),
                initializer=self.kernel_initializer, name="kernel")
            self.add_bias()

        def propagate(self, projected, edge_index, edge_weight=None):
            edge_index = keras.ops.cast(edge_index, "int32")
            messages = keras.ops.take(projected, edge_index[0], axis=0)
            return self.finish(fg.propagate(messages, edge_index[1], projected.shape[0]))

    x = _features(rng)
    layer = SumConv(4, activation="tanh", bias_initializer="random_normal")
    out = _numpy(layer(x, EDGES))
    kernel, bias = _numpy(layer.kernel), _numpy(layer.bias)
    expected = np.zeros((x.shape[0], 4))
    for s, t in EDGES.T:
        expected[t] += x[s] @ kernel
    np.testing.assert_allclose(out, np.tanh(expected + bias), rtol=1e-5, atol=1e-5)
    assert layer.compute_output_shape(x.shape) == (x.shape[0], 4)
    assert SumConv.from_config(layer.get_config()).get_config() == layer.get_config()


# ---------------------------------------------------------------------- #
# Graph inputs and their checks.
# ---------------------------------------------------------------------- #
from keras_local.datasets import graph_inputs  # noqa: E402
from keras_local.datasets.graph_inputs import graph_batch  # noqa: E402
from keras_local.models.forward_gnn_link_model import ForwardGNNLinkModel  # noqa: E402
from keras_local.models.forward_gnn_model import ForwardGNNModel  # noqa: E402
from keras_local.models.gnn_model import GNNModel  # noqa: E402
from keras_local.rules import single_forward as sf  # noqa: E402


def _toy_graph(rng, nodes=12, features=5, classes=3, edges=30):
    labels = rng.integers(0, classes, nodes)
    x = rng.normal(size=(nodes, features)).astype("float32")
    edge_index = rng.integers(0, nodes, size=(2, edges)).astype("int32")
    return x, edge_index, labels


def test_graph_batch_layout(rng):
    x, edge_index, labels = _toy_graph(rng)
    labels[3] = -1
    train = np.array([0, 1, 2, 5])
    xb, yb, wb = graph_batch(x, edge_index, labels, mask=train, known_mask=train)
    assert xb["node_features"].shape == (1, 12, 5)
    assert xb["edge_index"].shape == (1, 2, 30) and xb["edge_index"].dtype == np.int32
    np.testing.assert_array_equal(wb[0], np.isin(np.arange(12), train).astype("float32"))
    assert yb[0, 3] == 0  # unlabelled node stored as 0, outside the mask
    expected_known = np.where(np.isin(np.arange(12), train), labels, -1)
    np.testing.assert_array_equal(xb["known_labels"][0], expected_known)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda e, x, y: (e.at_max(), x, y), "outside"),
        (lambda e, x, y: (e.negative(), x, y), "outside"),
        (lambda e, x, y: (e.value.T, x, y), "shape \\(2, num_edges\\)"),
        (lambda e, x, y: (e.value.astype("float32"), x, y), "integer"),
        (lambda e, x, y: (e.value, x, y[:-1]), "different lengths"),
    ],
)
def test_bad_graph_inputs_raise(rng, edit, message):
    x, edge_index, labels = _toy_graph(rng)

    class Edges:
        value = edge_index

        def at_max(self):
            bad = edge_index.copy()
            bad[1, 4] = 12
            return bad

        def negative(self):
            bad = edge_index.copy()
            bad[0, 0] = -1
            return bad

    bad_edges, x, labels = edit(Edges(), x, labels)
    with pytest.raises(ValueError, match=message):
        graph_batch(x, bad_edges, labels)
    # The model's own check catches the same arrays before training.
    xb, yb, _ = graph_batch(*_toy_graph(np.random.default_rng(0)))
    xb = dict(xb)
    if np.asarray(bad_edges).shape == (2, 30):
        xb["edge_index"] = np.asarray(bad_edges)[None]
    elif np.asarray(bad_edges).ndim == 2:
        xb["edge_index"] = np.asarray(bad_edges)[None]
    if len(labels) != 12:
        yb = yb[:, :-1]
    model = ForwardGNNModel(3, rule="sf", units=4, num_layers=1)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=message):
        model.fit(xb, yb, batch_size=1, epochs=1, verbose=0)


def test_graph_inputs_other_checks(rng):
    x, edge_index, labels = _toy_graph(rng)
    xb, yb, wb = graph_batch(x, edge_index, labels)
    with pytest.raises(ValueError, match="dict"):
        graph_inputs.validate_graph_inputs(x)
    with pytest.raises(ValueError, match="one full graph"):
        graph_inputs.validate_graph_inputs({**xb, "node_features": x})
    with pytest.raises(ValueError, match="edge_weight"):
        graph_inputs.validate_graph_inputs({**xb, "edge_weight": np.ones((1, 3), "float32")})
    with pytest.raises(ValueError, match="\\[0, 2\\)"):
        graph_inputs.validate_graph_inputs(xb, yb, wb, num_classes=2)
    with pytest.raises(ValueError, match="unlabelled"):
        graph_batch(x, edge_index, np.where(np.arange(12) == 0, -1, labels), mask=np.arange(12))


# ---------------------------------------------------------------------- #
# The TF-GNN adapter.
# ---------------------------------------------------------------------- #
def _tensorflow_gnn_or_skip():
    try:
        from keras_local.backend.graph_tensor import import_tensorflow_gnn

        import_tensorflow_gnn()
    except ImportError as error:
        reason = (
            "tensorflow-gnn and tf-keras are not installed, so no GraphTensor "
            f"can be built ({error}); CI installs them."
        )
        if UNDER_CI:
            pytest.fail(f"CI must have them: {reason}")
        pytest.skip(reason)


def test_graph_tensor_round_trip(rng):
    _tensorflow_gnn_or_skip()
    from keras_local.backend.graph_tensor import arrays_to_graph_tensor
    from keras_local.backend.graph_tensor import graph_tensor_to_arrays

    x, edge_index, labels = _toy_graph(rng)
    graph = arrays_to_graph_tensor(
        x, edge_index, node_set="paper", edge_set="cites", feature="words",
        labels=labels, label="subject",
    )
    xb, yb, wb = graph_inputs.from_graph_tensor(
        graph, "paper", "cites", feature="words", label="subject", mask=np.arange(4),
    )
    np.testing.assert_array_equal(xb["node_features"][0], x)
    np.testing.assert_array_equal(xb["edge_index"][0], edge_index)
    np.testing.assert_array_equal(yb[0], labels)
    np.testing.assert_array_equal(wb[0], (np.arange(12) < 4).astype("float32"))
    arrays = graph_tensor_to_arrays(graph, "paper", "cites", feature="words")
    assert arrays["edge_index"].dtype == np.int32
    with pytest.raises(ValueError, match="No node set 'author'"):
        graph_tensor_to_arrays(graph, "author", "cites")
    with pytest.raises(ValueError, match="No feature 'title'"):
        graph_tensor_to_arrays(graph, "paper", "cites", feature="title")


# ---------------------------------------------------------------------- #
# The constructions equal their definitions.
# ---------------------------------------------------------------------- #
def test_label_appending_definition(rng):
    x, _, labels = _toy_graph(rng)
    mask = (np.arange(12) % 3 == 0).astype("float32")
    out = _numpy(fg.append_labels(keras.ops.convert_to_tensor(x), labels, mask, 3))
    expected = np.concatenate(
        [x, np.where(mask[:, None] > 0, np.eye(3)[labels], np.float32(1.0 / 3))], axis=1
    ).astype("float32")
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("layer_cls", [GCNConv, SAGEConv, GATConv])
def test_virtual_node_graph_definition(rng, layer_cls):
    x, edge_index, labels = _toy_graph(rng)
    classes = sf.initial_class_embeddings(3, (5,), seed=1)
    mask = (np.arange(12) < 5).astype("float32")
    h, edges, weight = fg.virtual_node_graph(
        keras.ops.convert_to_tensor(x), edge_index, None, labels, mask, classes
    )
    h, edges, weight = _numpy(h), _numpy(edges), _numpy(weight)
    np.testing.assert_array_equal(h, np.concatenate([x, classes]))
    # The definition: the graph plus, for each masked node i, i -> N+y_i and
    # back; nothing for the others.
    masked = np.flatnonzero(mask)
    explicit = np.concatenate(
        [edge_index,
         np.stack([masked, 12 + labels[masked]]),
         np.stack([12 + labels[masked], masked])], axis=1,
    )
    present = edges[:, weight > 0]
    assert sorted(map(tuple, present.T)) == sorted(map(tuple, explicit.T))
    assert np.all(weight[:30] == 1) and set(np.unique(weight)) <= {0.0, 1.0}
    # A layer on the weighted (static-size) graph equals the same layer on
    # the explicit graph.
    layer = layer_cls(4) if layer_cls is not GATConv else GATConv(4, heads=2)
    np.testing.assert_allclose(
        _numpy(layer(h, edges, weight)), _numpy(layer(h, explicit.astype("int32"))),
        rtol=1e-5, atol=1e-5,
    )


# ---------------------------------------------------------------------- #
# Locality of every rule.
# ---------------------------------------------------------------------- #
def _tensors(tree):
    return keras.tree.map_structure(
        lambda t: None if t is None else keras.ops.convert_to_tensor(t), tree
    )


def _grads(model, tv, x, y, w):
    ntv = [v.value for v in model.non_trainable_variables]
    grads, _, loss, _, logs = model.local_grads(tv, ntv, _tensors(x), _tensors(y), _tensors(w))
    return [_numpy(g) for g in grads], float(_numpy(loss)), logs


def _perturbed(model, layer, tv, scale=0.5):
    idx = model.variable_indices(layer)
    out = list(tv)
    for i in idx:
        out[i] = tv[i] + scale * keras.ops.ones_like(tv[i])
    return out


def _check_locality(model, x, y, w, first, second):
    tv = [v.value for v in model.trainable_variables]
    base, loss, logs = _grads(model, tv, x, y, w)
    assert np.isfinite(loss) and set(logs) == set(model.local_log_names())
    moved, _, _ = _grads(model, _perturbed(model, second, tv), x, y, w)
    for i in model.variable_indices(first):
        np.testing.assert_array_equal(base[i], moved[i])
        assert np.abs(base[i]).sum() > 0
    # ...while the upper layer's own update does change.
    assert any(
        not np.allclose(base[i], moved[i]) for i in model.variable_indices(second)
    )
    # The step reads the values passed, not the variables: the same values
    # held by the variables give the same update.
    values = _perturbed(model, second, tv)
    for variable, value in zip(model.trainable_variables, values):
        variable.assign(value)
    held, _, _ = _grads(model, [v.value for v in model.trainable_variables], x, y, w)
    for a, b in zip(moved, held):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "conv, rule",
    [("gcn", "ff_la"), ("gcn", "ff_vn"), ("gcn", "sf"), ("sage", "ff_la"), ("gat", "sf")],
)
def test_node_rules_are_local(rng, conv, rule):
    x, edge_index, labels = _toy_graph(rng)
    xb, yb, wb = graph_batch(x, edge_index, labels, mask=np.arange(8))
    model = ForwardGNNModel(3, conv=conv, rule=rule, num_layers=2, units=4, heads=2, seed=3)
    model.build({k: v.shape for k, v in xb.items()})
    _check_locality(model, xb, yb, wb, model.convs[0], model.convs[1])


@pytest.mark.parametrize("rule", ["ff", "sf"])
def test_link_rules_are_local(rng, rule):
    x, edge_index, _ = _toy_graph(rng)
    xb, yb = graph_inputs.link_batch(x, edge_index, edge_index[:, :10])
    model = ForwardGNNLinkModel(conv="gcn", rule=rule, num_layers=2, units=4, seed=3)
    model.build({k: v.shape for k, v in xb.items()})
    _check_locality(model, xb, np.ones((1, 10), "float32"), None, model.convs[0], model.convs[1])


def test_sf_topdown_equals_its_definition(rng):
    """Layer j's update is the gradient of CE(softmax(<e_i, e_v>)) with
    e = mean(h_j, s_{j+2}, ...), the states above taken as constants."""
    x, edge_index, labels = _toy_graph(rng)
    mask = (np.arange(12) < 8).astype("float32")
    xb, yb, wb = graph_batch(x, edge_index, labels, mask=mask)
    model = ForwardGNNModel(
        3, conv="gcn", rule="sf_topdown", num_layers=3, units=4, clip_norm=None, seed=3
    )
    model.build({k: v.shape for k, v in xb.items()})
    tv = [v.value for v in model.trainable_variables]
    grads, _, _ = _grads(model, tv, xb, yb, wb)
    # The definition, in NumPy on top of each layer's own call.
    classes = _numpy(model.class_features)
    h0, edges, weight = fg.virtual_node_graph(
        keras.ops.convert_to_tensor(x), edge_index, None, labels, mask, classes
    )
    states = [_numpy(sf.row_normalize(h0))]
    for conv in model.convs:
        states.append(_numpy(sf.row_normalize(conv(states[-1], edges, weight))))
    above = states[2:]  # for layer 0: s_2, s_3 (constants)
    conv = model.convs[0]

    def loss(params, inputs):
        out, _ = conv.stateless_call(params, [], inputs, edges, weight)
        e = (out + sum(keras.ops.convert_to_tensor(s) for s in above)) / (1 + len(above))
        logits = keras.ops.matmul(e[:12], keras.ops.transpose(e[12:]))
        ce = -keras.ops.take_along_axis(
            keras.ops.log_softmax(logits, axis=-1), keras.ops.convert_to_tensor(labels[:, None]), axis=-1
        )[:, 0]
        return keras.ops.sum(ce * keras.ops.convert_to_tensor(mask)) / float(mask.sum())

    _, expected = backend.value_and_grad(loss)(
        [v.value for v in conv.trainable_variables], keras.ops.convert_to_tensor(states[0])
    )
    for i, g in zip(model.variable_indices(conv), expected):
        np.testing.assert_allclose(grads[i], _numpy(g), rtol=1e-4, atol=1e-6)
    # The top-down signal is really there: plain SF gives another update.
    plain = ForwardGNNModel(3, conv="gcn", rule="sf", num_layers=3, units=4, seed=3)
    plain.build({k: v.shape for k, v in xb.items()})
    for a, b in zip(plain.trainable_variables, model.trainable_variables):
        a.assign(b)
    plain_grads, _, _ = _grads(plain, tv, xb, yb, wb)
    i = model.variable_indices(conv)[0]
    assert not np.allclose(plain_grads[i], grads[i])


# ---------------------------------------------------------------------- #
# Save / load, real data, the guide.
# ---------------------------------------------------------------------- #
def test_save_load_round_trip(rng, tmp_path):
    x, edge_index, labels = _toy_graph(rng)
    xb, yb, wb = graph_batch(x, edge_index, labels, mask=np.arange(8), known_mask=np.arange(8))
    model = ForwardGNNModel(3, conv="sage", rule="ff_vn", num_layers=2, units=4, seed=5)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), weighted_metrics=["accuracy"])
    model.fit(xb, yb, sample_weight=wb, batch_size=1, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, ForwardGNNModel) and loaded.rule == "ff_vn"
    np.testing.assert_allclose(loaded.predict(xb, verbose=0), model.predict(xb, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_numpy(loaded.class_features), _numpy(model.class_features))
    model.fit(xb, yb, sample_weight=wb, batch_size=1, epochs=1, verbose=0)
    loaded.fit(xb, yb, sample_weight=wb, batch_size=1, epochs=1, verbose=0)
    for a, b in zip(model.trainable_variables, loaded.trainable_variables):
        np.testing.assert_allclose(_numpy(a), _numpy(b), rtol=1e-5, atol=1e-6)


def test_shrunk_cora_learns_well_above_chance():
    require_data("cora_planetoid.npz")
    from keras_local.datasets import load_cora

    data = load_cora()
    batches = graph_inputs.dataset_batches(data)
    (x, y, train), (xt, yt, test) = batches["train"], batches["test"]
    model = ForwardGNNModel(data.num_classes, conv="gcn", rule="sf", num_layers=2, units=32, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), weighted_metrics=["accuracy"])
    model.fit(x, y, sample_weight=train, batch_size=1, epochs=30, verbose=0)
    accuracy = model.evaluate(xt, yt, sample_weight=test, verbose=0, return_dict=True)["accuracy"]
    # 7 classes: chance is 14%, the majority class 32% of the test nodes.
    assert accuracy > 0.6, accuracy


def test_guide_runs_shrunk(monkeypatch):
    require_data("cora_planetoid.npz")
    monkeypatch.setenv("KERAS_LOCAL_SHRINK", "1")
    runpy.run_path(str(ROOT / "guides" / "forward_gnn.py"), run_name="__main__")


def test_benchmark_rules_registered(rng):
    from keras_local.benchmark.benchmark_spec import BenchmarkSpec
    from keras_local.benchmark.registry import available_rules

    RULES = available_rules()
    names = {f"forward_gnn_{c}_{r}" for c in fg.CONVS for r in fg.NODE_RULES}
    assert names | {f"backprop_gnn_{c}" for c in fg.CONVS} <= set(RULES)
    spec = BenchmarkSpec(dataset="toy", input_shape=(5,), num_classes=3, hidden_units=(8, 8))
    model = RULES["forward_gnn_sage_ff_la"](spec)
    assert isinstance(model, ForwardGNNModel) and model.num_layers == 2 and model.conv == "sage"


# ---------------------------------------------------------------------- #
# Reference-fidelity options: all negatives, weight decay, layer-wise
# training, dropout.
# ---------------------------------------------------------------------- #
def test_cyclic_wrong_labels_cover_every_wrong_class(rng):
    labels = rng.integers(0, 5, 20)
    first = (labels + rng.integers(1, 5, 20)) % 5
    out = np.stack([_numpy(t) for t in fg.cyclic_wrong_labels(labels, first, 5, 4)], 1)
    np.testing.assert_array_equal(out[:, 0], first)
    for row, label in zip(out, labels):
        assert sorted(row.tolist() + [label]) == list(range(5))


@pytest.mark.parametrize("rule", ["ff_la", "ff_vn"])
def test_all_negatives_loss_is_the_mean_over_wrong_classes(rng, rule):
    """With `num_negatives=None`, layer 0's loss is BCE(pos, 1) plus the
    mean over every wrong class c of BCE(neg_c, 0), written out here."""
    x, edge_index, labels = _toy_graph(rng)
    mask = (np.arange(12) < 8).astype("float32")
    xb, yb, wb = graph_batch(x, edge_index, labels, mask=mask)
    model = ForwardGNNModel(3, conv="gcn", rule=rule, num_layers=1, units=4,
                            num_negatives=None, seed=2)
    model.build({k: v.shape for k, v in xb.items()})
    tv = [v.value for v in model.trainable_variables]
    _, loss, _ = _grads(model, tv, xb, yb, wb)
    conv = model.convs[0]
    t = keras.ops.convert_to_tensor
    classes = _numpy(model.class_features) if rule == "ff_vn" else None

    def goodness_loss(graph_labels, target):
        if rule == "ff_la":
            h = fg.append_labels(t(x), graph_labels, mask, 3)
            edges, weight = edge_index, None
        else:
            h, edges, weight = fg.virtual_node_graph(t(x), edge_index, None, graph_labels, mask, classes)
        out = _numpy(conv(sf.row_normalize(h), edges, weight))[:12]
        logits = (out ** 2).sum(-1) - 2.0
        bce = np.logaddexp(0, logits) - logits * target
        return (bce * mask).sum() / mask.sum()

    # The model's negative graphs: together, every wrong class once per node.
    ntv = [v.value for v in model.non_trainable_variables]
    wrong = [_numpy(m) for m in model.negative_labels_for(keras.ops.convert_to_tensor(labels), ntv)]
    for row, label in zip(np.stack(wrong, 1), labels):
        assert sorted(row.tolist() + [label]) == [0, 1, 2]
    expected = goodness_loss(labels, 1.0) + np.mean([goodness_loss(m, 0.0) for m in wrong])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("rule", ["ff_la", "ff_vn"])
def test_ff_prediction_gives_the_candidate_to_the_queried_nodes_only(rng, rule):
    """FF score of class c, written out: the known nodes keep their labels,
    the queried nodes get c, every other node stays as in training (uniform
    label row / no virtual-node edge); goodness summed over the layers."""
    x, edge_index, labels = _toy_graph(rng)
    known, query = np.arange(12) < 4, (np.arange(12) >= 4) & (np.arange(12) < 8)
    xq, _, _ = graph_batch(x, edge_index, labels, known_mask=known, query_mask=query)
    model = ForwardGNNModel(3, conv="gcn", rule=rule, num_layers=2, units=4, seed=3)
    scores = _numpy(model.predict_on_batch(xq))[0]
    t = keras.ops.convert_to_tensor
    classes = _numpy(model.class_features) if rule == "ff_vn" else None
    labelled = (known | query).astype("float32")
    for c in range(3):
        graph_labels = np.where(known, labels, c)
        if rule == "ff_la":
            h = fg.append_labels(t(x), graph_labels, labelled, 3)
            edges, weight = edge_index, None
        else:
            h, edges, weight = fg.virtual_node_graph(
                t(x), edge_index, None, graph_labels, labelled, classes
            )
        expected = np.zeros(12)
        for conv in model.convs:
            h = conv(sf.row_normalize(h), edges, weight)
            expected += (_numpy(h)[:12] ** 2).sum(-1)
        np.testing.assert_allclose(scores[:, c], expected, rtol=1e-5, atol=1e-6)
    # Without a query mask every unlabelled node gets the candidate, which
    # changes the queried nodes' scores (their neighbours differ).
    xall, _, _ = graph_batch(x, edge_index, labels, known_mask=known)
    everyone = _numpy(model.predict_on_batch(xall))[0]
    ones = _numpy(model.predict_on_batch({**xall, "query_mask": np.ones((1, 12), "float32")}))[0]
    np.testing.assert_allclose(everyone, ones, rtol=1e-6)
    assert not np.allclose(everyone[query], scores[query])


def test_query_mask_is_checked(rng):
    x, edge_index, labels = _toy_graph(rng)
    xq, _, _ = graph_batch(x, edge_index, labels, query_mask=np.array([1, 4]))
    np.testing.assert_array_equal(xq["query_mask"][0], np.isin(np.arange(12), [1, 4]))
    with pytest.raises(ValueError, match="'query_mask' must be 0/1 of shape \\(1, 12\\)"):
        graph_inputs.validate_graph_inputs({**xq, "query_mask": np.ones((1, 11), "float32")})
    with pytest.raises(ValueError, match="'query_mask' must be 0/1"):
        graph_inputs.validate_graph_inputs({**xq, "query_mask": np.full((1, 12), 0.5, "float32")})
    # The split batches query their own nodes.
    data = type("Split", (), dict(x=x, edge_index=edge_index, y=labels, train_index=np.arange(3),
                                  val_index=np.arange(3, 6), test_index=np.arange(6, 12)))
    batches = graph_inputs.dataset_batches(data)
    assert "query_mask" not in batches["train"][0]
    for split, index in (("val", np.arange(3, 6)), ("test", np.arange(6, 12))):
        np.testing.assert_array_equal(batches[split][0]["query_mask"][0], np.isin(np.arange(12), index))


def test_weight_decay_adds_l2_to_the_pseudo_gradient(rng):
    x, edge_index, labels = _toy_graph(rng)
    xb, yb, wb = graph_batch(x, edge_index, labels, mask=np.arange(8))
    plain = ForwardGNNModel(3, rule="sf", num_layers=2, units=4, seed=1)
    decayed = ForwardGNNModel(3, rule="sf", num_layers=2, units=4, weight_decay=0.1, seed=1)
    for m in (plain, decayed):
        m.build({k: v.shape for k, v in xb.items()})
    decayed.set_weights(plain.get_weights())
    tv = [v.value for v in plain.trainable_variables]
    g0, _, _ = _grads(plain, tv, xb, yb, wb)
    g1, _, _ = _grads(decayed, tv, xb, yb, wb)
    for a, b, v in zip(g0, g1, tv):
        np.testing.assert_allclose(b, a + 0.1 * _numpy(v), rtol=1e-5, atol=1e-6)


def _check_active_layer(rng, model, two, xb, yb, wb):
    """`model` (3 layers) with layer 1 active: layer 1 gets the update it
    gets when every layer learns, the others none, and `predict` equals
    the 2-layer model `two` given the same weights."""
    model.build({k: v.shape for k, v in xb.items()})
    # Weights from the test's own generator: with 4 ReLU units a backend's
    # random initialisation can leave a layer dead and its gradient zero.
    for v in model.trainable_variables:
        v.assign(rng.normal(size=v.shape).astype("float32") * 0.5)
    tv = [v.value for v in model.trainable_variables]
    joint, _, _ = _grads(model, tv, xb, yb, wb)
    model.set_active_layer(1)
    grads, _, logs = _grads(model, tv, xb, yb, wb)
    for i, conv in enumerate(model.convs):
        for k in model.variable_indices(conv):
            if i == 1:
                # Same input and step seed: the update of joint training.
                np.testing.assert_allclose(grads[k], joint[k], rtol=1e-5, atol=1e-7)
                assert np.abs(grads[k]).sum() > 0
            else:
                assert not np.any(grads[k])
    assert float(_numpy(logs["layer_2_loss"])) == 0.0
    two.build({k: v.shape for k, v in xb.items()})
    for a, b in zip(two.weights, model.weights):
        if a.shape == b.shape:
            a.assign(b)
    np.testing.assert_allclose(_numpy(model(xb)), _numpy(two(xb)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Received: index=3"):
        model.set_active_layer(3)


@pytest.mark.parametrize("rule", ["ff_la", "ff_vn", "sf"])
def test_active_layer_trains_one_layer_and_predicts_with_layers_below(rng, rule):
    x, edge_index, labels = _toy_graph(rng)
    xb, yb, wb = graph_batch(x, edge_index, labels, mask=np.arange(8), known_mask=np.arange(8))
    _check_active_layer(
        rng,
        ForwardGNNModel(3, rule=rule, num_layers=3, units=4, num_negatives=None, seed=4),
        ForwardGNNModel(3, rule=rule, num_layers=2, units=4, seed=4),
        xb, yb, wb,
    )
    topdown = ForwardGNNModel(3, rule="sf_topdown", num_layers=2, units=4)
    with pytest.raises(ValueError, match="sf_topdown"):
        topdown.set_active_layer(0)


@pytest.mark.parametrize("rule", ["ff", "sf"])
def test_link_active_layer_trains_one_layer_and_predicts_with_layers_below(rng, rule):
    x, edge_index, _ = _toy_graph(rng)
    xb, _ = graph_inputs.link_batch(x, edge_index, edge_index[:, :10])
    _check_active_layer(
        rng,
        ForwardGNNLinkModel(conv="gcn", rule=rule, num_layers=3, units=4, seed=3),
        ForwardGNNLinkModel(conv="gcn", rule=rule, num_layers=2, units=4, seed=3),
        xb, np.ones((1, 10), "float32"), None,
    )


def test_layerwise_fit_keeps_frozen_layers_and_resets_the_optimizer(rng):
    x, edge_index, labels = _toy_graph(rng)
    xb, yb, wb = graph_batch(x, edge_index, labels, mask=np.arange(8), known_mask=np.arange(8))
    model = ForwardGNNModel(3, rule="sf", num_layers=2, units=4, weight_decay=5e-4,
                            dropout=0.3, seed=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.set_active_layer(0)
    model.fit(xb, yb, sample_weight=wb, batch_size=1, epochs=3, verbose=0)
    first = [_numpy(v) for v in model.convs[0].weights]
    model.set_active_layer(1)
    assert int(_numpy(model.optimizer.iterations)) == 0
    assert float(_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-2)
    second_before = [_numpy(v) for v in model.convs[1].weights]
    model.fit(xb, yb, sample_weight=wb, batch_size=1, epochs=3, verbose=0)
    for a, v in zip(first, model.convs[0].weights):
        np.testing.assert_array_equal(a, _numpy(v))
    assert any(not np.allclose(a, _numpy(v)) for a, v in zip(second_before, model.convs[1].weights))


def test_new_options_are_checked_and_serialized():
    with pytest.raises(ValueError, match="Received: num_negatives=3"):
        ForwardGNNModel(3, rule="ff_la", num_negatives=3)
    with pytest.raises(ValueError, match="Received: weight_decay=-1"):
        ForwardGNNModel(3, weight_decay=-1)
    with pytest.raises(ValueError, match="Received: dropout=1.0"):
        ForwardGNNModel(3, dropout=1.0)
    model = ForwardGNNModel(3, rule="ff_vn", num_negatives=None, dropout=0.2, weight_decay=5e-4)
    clone = ForwardGNNModel.from_config(model.get_config())
    assert (clone.num_negatives, clone.dropout, clone.weight_decay) == (None, 0.2, 5e-4)
    with pytest.raises(ValueError, match="Received: weight_decay=-0.1"):
        GNNModel(3, weight_decay=-0.1)


def test_gnn_model_weight_decay_is_coupled_l2(rng):
    x, edge_index, labels = _toy_graph(rng)
    xb, yb, wb = graph_batch(x, edge_index, labels)
    model = GNNModel(3, num_layers=1, units=4, weight_decay=0.2)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.build({k: v.shape for k, v in xb.items()})
    y_pred = model(xb)
    base = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(yb, y_pred)
    penalty = sum(float((_numpy(w) ** 2).sum()) for w in model.trainable_weights)
    loss = model.compute_loss(xb, yb, y_pred, training=True)
    np.testing.assert_allclose(float(_numpy(loss)), float(_numpy(base)) + 0.1 * penalty, rtol=1e-5)


def test_benchmark_summary_and_auc():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fgnn_bench", ROOT / "benchmarks" / "forward_gnn.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.roc_auc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.3]) == 1.0
    assert bench.roc_auc([1, 0], [0.5, 0.5]) == 0.5
    rows = [dict(task="node", dataset="cora", conv="gcn", rule=r, seed=s, test=t,
                 seconds=1.0, epochs=[10])
            for r, s, t in (("sf", 0, 80.0), ("sf", 1, 82.0), ("backprop", 0, 81.5))]
    rows.append(dict(task="memory", dataset="cora", conv="gcn", rule="sf", seed=2, layers=2,
                     bytes=2 ** 21))
    text = bench.summarize(rows)
    assert "| cora | gcn | 81.0 ± 1.0 | 81.5 ± 0.0 | -0.5 |" in text
    assert "| cora | gcn | 2 | 2.0 |" in text
    assert ("node", "cora", "gcn", "sf", 1) in bench.done_keys(rows)


def test_global_clipnorm_clips_each_layer_by_its_own_norm(rng):
    # Each layer learns from its own loss, so `global_clipnorm` clips each
    # layer's gradient by that layer's norm (see tests/test_gradient_clipping).
    x, edge_index, labels = _toy_graph(rng)
    xb, yb, wb = graph_batch(x, edge_index, labels, mask=np.arange(8))
    node = ForwardGNNModel(3, conv="gcn", rule="sf", num_layers=2, units=4, seed=3)
    lb, _ = graph_inputs.link_batch(x, edge_index, edge_index[:, :10])
    link = ForwardGNNLinkModel(conv="gcn", rule="ff", num_layers=2, units=4, seed=3)
    for model, batch, y, w in ((node, xb, yb, wb), (link, lb, np.ones((1, 10), "float32"), None)):
        model.build({k: v.shape for k, v in batch.items()})
        grads, _, _ = _grads(model, [v.value for v in model.trainable_variables], batch, y, w)
        norms = [np.sqrt(sum(np.sum(grads[i] ** 2) for i in model.variable_indices(c))) for c in model.convs]
        assert min(norms) > 0
        clipnorm = 0.5 * min(norms)
        model.compile(optimizer=keras.optimizers.SGD(0.1, global_clipnorm=clipnorm))
        clipped = [_numpy(g) for g in model._clip_gradient_groups(_tensors(grads))]
        for conv, norm in zip(model.convs, norms):
            for i in model.variable_indices(conv):
                np.testing.assert_allclose(clipped[i], grads[i] * clipnorm / norm, rtol=1e-4, atol=1e-7)
