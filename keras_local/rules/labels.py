"""Input checks shared by the rules: class labels, finite arrays, choices."""

import numpy as np


def check_choice(name, value, choices):
    """Raises `ValueError` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"Unknown `{name}`. Expected one of {list(choices)}. "
            f"Received: {name}={value!r}"
        )


def check_finite(x, name):
    """Raises `ValueError` if any float array in `x` holds NaN or inf."""
    leaves = x if isinstance(x, (list, tuple)) else (
        list(x.values()) if isinstance(x, dict) else [x]
    )
    for leaf in leaves:
        arr = np.asarray(leaf)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.sum(np.isfinite(arr)))
            raise ValueError(
                f"`{name}` contains {bad} NaN or infinite values. Expected "
                "finite inputs. Clean or impute them (e.g. "
                "`np.nan_to_num(x)`) before training; nothing was trained."
            )


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


def check_label_shape(shape):
    """Trace-time check: labels are `(batch,)` or `(batch, 1)` integers."""
    shape = tuple(shape)
    if len(shape) > 2 or (len(shape) == 2 and shape[-1] != 1):
        raise ValueError(
            "Expected integer class labels of shape (batch,). "
            f"Received: labels of shape {shape}. For one-hot labels "
            "pass `y.argmax(-1)`."
        )


def check_classification_data(model_name, x, y, num_classes, check_rank):
    """Eager checks of one input array and its integer labels (nothing is
    trained when they fail): a single array, its rank (`check_rank(shape)`
    raises), finite values, labels in range and of the same length."""
    if isinstance(x, (list, tuple, dict)):
        raise ValueError(
            f"{model_name} takes a single input array. Received: "
            f"x of type {type(x).__name__}."
        )
    x = np.asarray(x)
    check_rank(tuple(x.shape))
    check_finite(x, "x")
    if y is not None:
        check_integer_labels(y, num_classes, len(x))
