"""Image data sets in the `keras.datasets` shape: `(x_train, y_train), (x_test, y_test)`."""

import io

import numpy as np

from keras_local.datasets.data_path import find_data_file


def load_mnist(path=None):
    """MNIST, as `keras.datasets.mnist.load_data()` returns it.

    Args:
        path: optional file or folder holding `mnist.npz`. Defaults to
            `None` (search `$KERAS_LOCAL_DATA_DIR`, the Keras cache, then
            download with `keras.datasets.mnist`).

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images `(N, 28, 28)`
        and uint8 labels `(N,)`; 60k train, 10k test.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = keras_local.datasets.load_mnist()
    x_train = x_train.reshape(-1, 784).astype("float32") / 255.0
    ```

    References:
        - LeCun, Bottou, Bengio and Haffner, "Gradient-Based Learning
          Applied to Document Recognition", Proc. IEEE 1998.
    """

    def download():
        import keras

        keras.datasets.mnist.load_data()
        return find_data_file("mnist.npz")

    with np.load(find_data_file("mnist.npz", path, download), allow_pickle=False) as d:
        return (d["x_train"], d["y_train"]), (d["x_test"], d["y_test"])


def _decode_jpegs(buffer, offsets):
    from PIL import Image

    return np.stack(
        [
            np.asarray(
                Image.open(io.BytesIO(buffer[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB")
            )
            for i in range(len(offsets) - 1)
        ]
    )


def load_cifar10(path=None, max_train=None, max_test=None, seed=0):
    """CIFAR-10: uint8 images `(N, 32, 32, 3)`, uint8 labels `(N,)`.

    Reads `cifar10_jpeg.npz` (JPEG-compressed copy, rows sorted by class),
    decodes it and shuffles the rows with `seed`. Falls back to
    `keras.datasets.cifar10` when online.

    Args:
        path: optional file or folder. Defaults to `None`.
        max_train: int, decode only this many (shuffled, so all classes
            appear) training images. Defaults to `None` (all 50k).
        max_test: int, the same for the test set. Defaults to `None`.
        seed: int, the shuffle seed. Defaults to `0`.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images
        `(N, 32, 32, 3)` and uint8 labels `(N,)`.

    Example:

    ```python
    (x, y), (x_test, y_test) = keras_local.datasets.load_cifar10(
        max_train=5000, max_test=1000)
    ```

    References:
        - Krizhevsky, "Learning Multiple Layers of Features from Tiny
          Images", 2009.
    """
    try:
        file = find_data_file("cifar10_jpeg.npz", path)
    except FileNotFoundError as missing:
        try:
            import keras

            (x, y), (xt, yt) = keras.datasets.cifar10.load_data()
        except Exception:  # noqa: BLE001
            raise missing from None
        return (x[:max_train], y[:max_train, 0]), (xt[:max_test], yt[:max_test, 0])
    rng = np.random.default_rng(seed)
    out = []
    with np.load(file, allow_pickle=False) as d:
        for split, limit in (("train", max_train), ("test", max_test)):
            buffer, offsets = d[f"{split}_jpeg"], d[f"{split}_offsets"]
            labels = d[f"y_{split}"]
            order = rng.permutation(len(labels))[:limit]
            images = np.stack(
                [_decode_jpegs(buffer, offsets[i : i + 2])[0] for i in order]
            )
            out.append((images, labels[order]))
    return tuple(out)


def load_digits(path=None):
    """scikit-learn's 8x8 digits, split 1437 train / 360 test (seeded).

    The offline stand-in for MNIST: scikit-learn ships the data, so nothing
    is read from disk or downloaded.

    Args:
        path: ignored; accepted so every image loader has the same
            signature.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images `(N, 8, 8)`
        scaled to 0-255 and uint8 labels `(N,)`.

    Example:

    ```python
    (x, y), (x_test, y_test) = keras_local.datasets.load_digits()
    ```

    References:
        Alpaydin & Kaynak, "Optical Recognition of Handwritten Digits", UCI
        Machine Learning Repository, 1998.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype("uint8")
    labels = data.target.astype("uint8")
    order = np.random.default_rng(0).permutation(len(labels))
    train, test = order[:1437], order[1437:]
    return (images[train], labels[train]), (images[test], labels[test])
