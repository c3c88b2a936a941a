"""Convolutional Forward-Forward, threshold="width" and peer normalisation
(the Forward-Forward family issue)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_local import ForwardForwardModel
from keras_local.rules import forward_forward as ff
from tests import ff_reference as ref
from tests.conftest import to_numpy


def _conv_model(**kwargs):
    return ForwardForwardModel(
        [keras.layers.Conv2D(4, 3, activation="relu", padding="same"),
         keras.layers.Conv2D(4, 3, activation="relu")],
        num_classes=3, seed=0, **kwargs,
    )


def test_image_label_overlay_and_channels_match_numpy(rng):
    x = rng.random((2, 4, 5, 2)).astype("float32")
    labels = np.array([2, 0])
    expected = x.copy().reshape(2, 20, 2)
    expected[:, :3, :] = 0.0
    expected[np.arange(2), labels, :] = 1.5
    np.testing.assert_allclose(to_numpy(ff.embed_label(x, labels, 3, "overlay", 1.5)), expected.reshape(2, 4, 5, 2))
    appended = to_numpy(ff.embed_label(x, labels, 3, "append"))
    assert appended.shape == (2, 4, 5, 5)
    np.testing.assert_allclose(appended[..., :2], x)
    np.testing.assert_allclose(appended[..., 2:], np.broadcast_to(np.eye(3)[labels][:, None, None, :], (2, 4, 5, 3)))


def test_conv_goodness_and_normalisation_over_all_units(rng):
    h = rng.normal(size=(3, 4, 4, 2)).astype("float32")
    np.testing.assert_allclose(to_numpy(ff.goodness(h)), np.mean(h**2, axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(ff.goodness(h, "sum")), np.sum(h**2, axis=(1, 2, 3)), rtol=1e-5)
    flat = ref.rms_normalize(h.reshape(3, -1)).reshape(h.shape)
    np.testing.assert_allclose(to_numpy(ff.normalize_length(h)), flat, rtol=1e-5)


def test_peer_normalisation_equals_its_formula(rng):
    h = rng.random((5, 3, 3, 4)).astype("float32")
    running = rng.random(4).astype("float32")
    loss, new_mean = ff.peer_normalization(h, running, momentum=0.8)
    expected_mean = 0.8 * running + 0.2 * h.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(to_numpy(new_mean), expected_mean, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(loss), np.mean((expected_mean.mean() - expected_mean) ** 2), rtol=1e-5)


def test_peer_normalisation_updates_the_running_means_in_fit(rng):
    x = rng.random((16, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, 16)
    model = _conv_model(peer_normalization=0.03, peer_momentum=0.5)
    model.compile(optimizer="adam")
    model.build((None, 6, 6, 1))
    first = model.blocks[0]
    out = first(ff.normalize_length(ff.embed_label(ops.convert_to_tensor(x), y, 3)))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    # One step from zeros: r = 0.5 * 0 + 0.5 * mean(positive activity).
    np.testing.assert_allclose(
        to_numpy(model.running_means[0].value), 0.5 * to_numpy(ops.mean(out, axis=(0, 1, 2))), rtol=1e-4, atol=1e-6
    )


def test_width_threshold_uses_sum_of_squares_against_block_size(rng):
    model = _conv_model(threshold="width")
    model.build((None, 6, 6, 1))
    assert model._thresholds == [6 * 6 * 4.0, 4 * 4 * 4.0]


def test_conv_fit_predict_save_load(rng, tmp_path):
    x = rng.random((32, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, 32)
    model = _conv_model(peer_normalization=0.03, readout="softmax")
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y))
    model.save(tmp_path / "conv.keras")
    loaded = keras.models.load_model(tmp_path / "conv.keras")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    np.testing.assert_array_equal(to_numpy(model.running_means[1].value), to_numpy(loaded.running_means[1].value))


def test_image_smaller_than_the_label_overlay_is_rejected():
    model = ForwardForwardModel([keras.layers.Conv2D(2, 1)], num_classes=10)
    with pytest.raises(ValueError, match="label overlay writes 10 pixels"):
        model.build((None, 3, 3, 1))
    with pytest.raises(ValueError, match="threshold"):
        ForwardForwardModel([keras.layers.Dense(2)], num_classes=2, threshold="huge")
    with pytest.raises(ValueError, match="peer_momentum"):
        ForwardForwardModel([keras.layers.Dense(2)], num_classes=2, peer_momentum=1.5)
