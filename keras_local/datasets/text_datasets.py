"""Sentence classification sets: arrays of strings and integer labels."""

import numpy as np

from keras_local.datasets.data_path import find_data_file


def load_sst2(path=None):
    """SST-2 at sentence level (Socher et al. 2013).

    Returns:
        `(x_train, y_train), (x_dev, y_dev), (x_test, y_test)`: string arrays
        and int labels (0 negative, 1 positive); 6920 / 872 / 1821.
    """
    with np.load(find_data_file("sst2_sentences.npz", path), allow_pickle=False) as d:
        return tuple(
            (d[f"x_{s}"].astype(str), d[f"y_{s}"].astype("int32"))
            for s in ("train", "dev", "test")
        )


def load_trec6(path=None):
    """TREC question classification, 6 coarse classes (Li & Roth 2002).

    Returns:
        `(x_train, y_train), (x_test, y_test)`; 5452 / 500 questions.
    """
    with np.load(find_data_file("trec6.npz", path), allow_pickle=False) as d:
        return tuple(
            (d[f"x_{s}"].astype(str), d[f"y_{s}"].astype("int32"))
            for s in ("train", "test")
        )
