"""Sentence classification sets: arrays of strings and integer labels."""

import numpy as np

from keras_local.datasets.data_path import find_data_file


def load_sst2(path=None):
    """SST-2 at sentence level.

    Args:
        path: optional file or folder holding `sst2_sentences.npz`.
            Defaults to `None` (search `$KERAS_LOCAL_DATA_DIR`, then the
            Keras cache).

    Returns:
        `(x_train, y_train), (x_dev, y_dev), (x_test, y_test)`: string arrays
        and int labels (0 negative, 1 positive); 6920 / 872 / 1821.

    Example:

    ```python
    (x, y), (x_dev, y_dev), (x_test, y_test) = keras_local.datasets.load_sst2()
    vectorize = keras.layers.TextVectorization(20000, output_sequence_length=50)
    vectorize.adapt(x)
    tokens = vectorize(x[:8])  # (8, 50) int token ids
    ```

    References:
        - Socher et al., "Recursive Deep Models for Semantic
          Compositionality Over a Sentiment Treebank", EMNLP 2013.
    """
    with np.load(find_data_file("sst2_sentences.npz", path), allow_pickle=False) as d:
        return tuple(
            (d[f"x_{s}"].astype(str), d[f"y_{s}"].astype("int32"))
            for s in ("train", "dev", "test")
        )


def load_trec6(path=None):
    """TREC question classification, 6 coarse classes.

    Args:
        path: optional file or folder holding `trec6.npz`. Defaults to
            `None` (search `$KERAS_LOCAL_DATA_DIR`, then the Keras cache).

    Returns:
        `(x_train, y_train), (x_test, y_test)`: string arrays and int
        labels in `[0, 6)`; 5452 / 500 questions.

    Example:

    ```python
    (x, y), (x_test, y_test) = keras_local.datasets.load_trec6()
    ```

    References:
        - Li and Roth, "Learning Question Classifiers", COLING 2002.
    """
    with np.load(find_data_file("trec6.npz", path), allow_pickle=False) as d:
        return tuple(
            (d[f"x_{s}"].astype(str), d[f"y_{s}"].astype("int32"))
            for s in ("train", "test")
        )
