"""Offline-first dataset loaders on the shared real data."""

import os
import re

import numpy as np
import pytest

from keras_local import datasets
from keras_local.datasets import data_path
from tests.conftest import require_data


def test_mnist_shapes_and_explicit_path():
    file = require_data("mnist.npz")
    (x, y), (xt, yt) = datasets.load_mnist()
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert set(np.unique(y)) == set(range(10)) and len(yt) == 10000
    (x2, _), _ = datasets.load_mnist(path=os.path.dirname(file))
    np.testing.assert_array_equal(x[:5], x2[:5])


def test_cifar10_decodes_shuffled_subsets():
    require_data("cifar10_jpeg.npz")
    (x, y), (xt, yt) = datasets.load_cifar10(max_train=200, max_test=50)
    assert x.shape == (200, 32, 32, 3) and xt.shape == (50, 32, 32, 3) and x.dtype == np.uint8
    assert len(np.unique(y)) >= 8  # shuffled: rows are stored sorted by class
    assert 60 < x.mean() < 180


def test_digits_split():
    (x, y), (xt, yt) = datasets.load_digits()
    assert x.shape == (1437, 8, 8) and xt.shape == (360, 8, 8) and x.max() <= 255


@pytest.mark.parametrize(
    "loader, filename, nodes, classes, split",
    [
        (datasets.load_cora, "cora_planetoid.npz", 2708, 7, (140, 500, 1000)),
        (datasets.load_citeseer, "citeseer_planetoid.npz", 3327, 6, (120, 500, 1000)),
        (datasets.load_amazon_photo, "amazon_photo.npz", 7650, 8, None),
    ],
)
def test_graphs(loader, filename, nodes, classes, split):
    require_data(filename)
    graph = loader()
    assert graph.num_nodes == nodes and graph.num_classes == classes
    assert graph.edge_index.shape[0] == 2 and graph.edge_index.dtype == np.int32
    assert graph.edge_index.max() < nodes and not np.any(graph.edge_index[0] == graph.edge_index[1])
    sizes = tuple(len(i) for i in (graph.train_index, graph.val_index, graph.test_index))
    if split:
        assert sizes == split
    else:
        labeled = np.sum(graph.y >= 0)
        assert sum(sizes) == labeled and abs(sizes[0] / labeled - 0.6) < 0.01
        assert not set(graph.train_index) & set(graph.test_index)
        np.testing.assert_array_equal(graph.train_index, loader().train_index)  # fixed seed


def test_large_graphs_load_sparse():
    for loader, filename in ((datasets.load_amazon_computers, "amazon_computers.npz"),
                             (datasets.load_coauthor_cs, "coauthor_cs.npz")):
        require_data(filename)
        graph = loader(sparse=True)
        assert graph.x.shape[0] == graph.num_nodes and hasattr(graph.x, "tocsr")


def test_text_sets():
    require_data("sst2_sentences.npz")
    require_data("trec6.npz")
    (x, y), (xd, yd), (xt, yt) = datasets.load_sst2()
    assert (len(x), len(xd), len(xt)) == (6920, 872, 1821) and set(np.unique(y)) == {0, 1}
    assert isinstance(x[0], str)
    (q, c), (qt, ct) = datasets.load_trec6()
    assert (len(q), len(qt)) == (5452, 500) and set(np.unique(c)) == set(range(6))


def test_missing_file_error_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv(data_path.ENVIRONMENT_VARIABLE, str(tmp_path / "nowhere"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(FileNotFoundError) as error:
        datasets.load_trec6(path=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "trec6.npz") in message
    assert str(tmp_path / "nowhere" / "trec6.npz") in message
    assert "keras_home" in message and "download" in message


def test_stratified_split_shares_and_bad_fractions():
    y = np.repeat(np.arange(3), 20)
    y[:2] = -1  # unlabeled nodes are never placed
    train, val, test = datasets.stratified_split(y, (0.5, 0.25, 0.25), seed=1)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    placed = np.concatenate([train, val, test])
    assert len(placed) == 58 and np.all(y[placed] >= 0)
    for label in range(3):
        n = np.sum(y == label)
        assert np.sum(y[train] == label) == round(0.5 * n)
        assert np.sum(y[val] == label) == round(0.25 * n)
    # Shares below 1 leave the rest of each class unused.
    train, val, test = datasets.stratified_split(y, (0.1, 0.1, 0.2))
    assert [len(train), len(val), len(test)] == [2 + 2 + 2, 2 + 2 + 2, 4 + 4 + 4]
    for bad in [(0.6, 0.3, 0.3), (0.5, 0.5), (-0.1, 0.6, 0.5), "abc"]:
        with pytest.raises(ValueError, match=f"Received: {re.escape(repr(bad))}"):
            datasets.stratified_split(y, bad)


def test_link_split_rejects_bad_fractions_and_too_dense_graphs():
    ring = np.array([[0, 1, 2, 3], [1, 2, 3, 0]])
    with pytest.raises(ValueError, match="sum to less than 1"):
        datasets.link_split(ring, 4, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="Received: val_fraction=-0.1"):
        datasets.link_split(ring, 4, val_fraction=-0.1)
    # Complete graph on 4 nodes: no non-edge to use as a negative.
    complete = np.array([[a, b] for a in range(4) for b in range(a + 1, 4)]).T
    with pytest.raises(ValueError, match="too dense"):
        datasets.link_split(complete, 4, val_fraction=0.2, test_fraction=0.2)
    split = datasets.link_split(ring, 4, val_fraction=0.25, test_fraction=0.25)
    assert split["val"][0].shape == (2, 2) and split["test"][1].tolist() == [1.0, 0.0]
