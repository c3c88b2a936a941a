"""Offline-first dataset loaders.

Each loader searches, in order: an explicit `path=`, `$KERAS_LOCAL_DATA_DIR`,
the Keras cache (`~/.keras/datasets`), then the usual download when one
exists and the machine is online; otherwise it raises `FileNotFoundError`
listing what it tried.
"""

from keras_local.datasets.data_path import find_data_file
from keras_local.datasets.graph_dataset import GraphDataset
from keras_local.datasets.graph_datasets import load_amazon_computers
from keras_local.datasets.graph_datasets import load_amazon_photo
from keras_local.datasets.graph_datasets import load_citeseer
from keras_local.datasets.graph_datasets import load_coauthor_cs
from keras_local.datasets.graph_datasets import load_cora
from keras_local.datasets.graph_datasets import stratified_split
from keras_local.datasets.graph_inputs import dataset_batches
from keras_local.datasets.graph_inputs import from_graph_tensor
from keras_local.datasets.graph_inputs import graph_batch
from keras_local.datasets.graph_inputs import link_batch
from keras_local.datasets.graph_inputs import link_split
from keras_local.datasets.image_datasets import load_cifar10
from keras_local.datasets.image_datasets import load_digits
from keras_local.datasets.image_datasets import load_mnist
from keras_local.datasets.text_datasets import load_sst2
from keras_local.datasets.text_datasets import load_trec6

__all__ = [
    "GraphDataset",
    "dataset_batches",
    "find_data_file",
    "from_graph_tensor",
    "graph_batch",
    "link_batch",
    "link_split",
    "load_amazon_computers",
    "load_amazon_photo",
    "load_cifar10",
    "load_citeseer",
    "load_coauthor_cs",
    "load_cora",
    "load_digits",
    "load_mnist",
    "load_sst2",
    "load_trec6",
    "stratified_split",
]
