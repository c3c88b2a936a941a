"""LocallyConnected2D against a NumPy reference, and as a Forward-Forward block."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_local import ForwardForwardModel
from keras_local.layers.locally_connected2d import LocallyConnected2D


def _reference(x, kernel, bias, kernel_size, strides, padding):
    """y[b,i,j,f] = sum_{u,v,c} xp[b, i s + u, j s + v, c] K[i,j,(u,v,c),f] + bias."""
    kh, kw = kernel_size
    sh, sw = strides
    out_h, out_w = kernel.shape[:2]
    if padding == "same":
        pad_h = max((out_h - 1) * sh + kh - x.shape[1], 0)
        pad_w = max((out_w - 1) * sw + kw - x.shape[2], 0)
        x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                       (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    y = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]), "float64")
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :].reshape(len(x), -1)
            y[:, i, j, :] = patch @ kernel[i, j] + bias[i, j]
    return y


@pytest.mark.parametrize(
    "kernel_size,strides,padding",
    [((3, 3), (1, 1), "valid"), ((3, 2), (2, 1), "valid"), ((3, 3), (1, 1), "same"),
     ((5, 5), (2, 2), "same")],
)
def test_matches_numpy_reference(rng, kernel_size, strides, padding):
    x = rng.normal(size=(2, 7, 6, 3)).astype("float32")
    layer = LocallyConnected2D(4, kernel_size, strides=strides, padding=padding)
    y = ops.convert_to_numpy(layer(x))
    kernel = rng.normal(size=tuple(layer.kernel.shape)).astype("float32")
    bias = rng.normal(size=tuple(layer.bias.shape)).astype("float32")
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    y = ops.convert_to_numpy(layer(x))
    assert y.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, _reference(x, kernel, bias, kernel_size, strides, padding),
                               rtol=1e-4, atol=1e-4)


def test_weights_are_not_shared_and_init_is_per_position(rng):
    layer = LocallyConnected2D(8, 3, padding="same")
    layer.build((None, 10, 10, 4))
    kernel = ops.convert_to_numpy(layer.kernel)
    assert kernel.shape == (10, 10, 36, 8)
    assert not np.allclose(kernel[0, 0], kernel[5, 5])
    # Glorot uniform of a 36 -> 8 dense layer: variance 2 / (36 + 8).
    np.testing.assert_allclose(kernel.var(), 2.0 / 44.0, rtol=0.1)


def test_config_round_trip_and_bad_arguments():
    layer = LocallyConnected2D(2, (3, 1), strides=2, padding="same", activation="relu")
    clone = LocallyConnected2D.from_config(layer.get_config())
    assert (clone.kernel_size, clone.strides, clone.padding) == ((3, 1), (2, 2), "same")
    with pytest.raises(ValueError, match="Received: padding="):
        LocallyConnected2D(2, 3, padding="causal")
    with pytest.raises(ValueError, match="Received: kernel_size="):
        LocallyConnected2D(2, 0)
    with pytest.raises(ValueError, match="Received: input_shape="):
        LocallyConnected2D(2, 3).build((None, 8))
    with pytest.raises(ValueError, match="does not fit"):
        LocallyConnected2D(2, 5).build((None, 3, 3, 1))


def test_forward_forward_block_fit_save_load(rng, tmp_path):
    x = rng.random((24, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, 24)
    model = ForwardForwardModel(
        [LocallyConnected2D(4, 3, padding="same", activation="relu"),
         LocallyConnected2D(4, 3, activation="relu")],
        num_classes=3, threshold="width", label_embedding="append", seed=0,
    )
    model.compile(optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=12, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model._thresholds == [6 * 6 * 4.0, 4 * 4 * 4.0]
    model.save(tmp_path / "lc.keras")
    loaded = keras.models.load_model(tmp_path / "lc.keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), rtol=1e-5)
