"""Checks of class-label arrays, shared by the supervised rules."""

import numpy as np


def check_integer_labels(y, num_classes, num_samples=None):
    """Raises `ValueError` unless `y` holds integer labels in
    `[0, num_classes)`, shaped `(N,)` or `(N, 1)`."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[-1] == num_classes and num_classes > 1:
        raise ValueError(
            "Expected integer class labels of shape (N,). Received: labels "
            f"of shape {y.shape}, which look one-hot encoded. Pass "
            "`y.argmax(-1)` instead."
        )
    if y.ndim > 2 or (y.ndim == 2 and y.shape[-1] != 1):
        raise ValueError(
            "Expected integer class labels of shape (N,) or (N, 1). "
            f"Received: labels of shape {y.shape}."
        )
    if num_samples is not None and len(y) != num_samples:
        raise ValueError(
            f"x and y have different lengths. Received: {num_samples} inputs "
            f"and {len(y)} labels. Expected one label per input."
        )
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y)) or np.any(
            y != np.round(y)
        ):
            raise ValueError(
                "Expected integer class labels. Received: labels of dtype "
                f"{y.dtype} with non-integer values."
            )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"Labels must lie in [0, {num_classes}) for num_classes="
            f"{num_classes}. Received: labels from {y.min()} to {y.max()}."
        )
