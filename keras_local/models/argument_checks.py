"""Constructor checks shared by the block-stack models."""

import keras
import numpy as np


def check_blocks(blocks, minimum=1, expected="a non-empty list of Keras layers"):
    """Returns `blocks` as a list, or raises: `ValueError` for too few,
    `TypeError` for an entry that is not a Keras layer."""
    blocks = list(blocks) if isinstance(blocks, (list, tuple)) else blocks
    if not isinstance(blocks, list) or len(blocks) < minimum:
        raise ValueError(f"`blocks` must be {expected}. Received: blocks={blocks!r}")
    for block in blocks:
        if not isinstance(block, keras.layers.Layer):
            raise TypeError(
                "Every block must be a `keras.layers.Layer`. Received: "
                f"{block!r} of type {type(block).__name__}"
            )
    return blocks


def check_num_classes(num_classes):
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(
            "`num_classes` must be an int >= 2. Received: "
            f"num_classes={num_classes!r}"
        )
