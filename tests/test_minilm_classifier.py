"""The MiniLM classifier cut into a cached bottom and a trainable top.

A small random `BertBackbone` stands in for MiniLM (same class, same code
path, no download): the pretrained one is exercised by the example's
shrunk run in `test_zeroth_order_model.py`.
"""

import keras
import numpy as np
import pytest

from tests.conftest import require_module

LENGTH = 12


@pytest.fixture
def backbone():
    keras_hub = require_module("keras_hub", "requirements-nodeps.txt installs it")
    return keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=3, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=LENGTH, dropout=0.1,
    )


def token_batch(rng, n=5):
    lengths = rng.integers(3, LENGTH + 1, size=n)
    ids = rng.integers(1, 50, size=(n, LENGTH)).astype("int32")
    mask = (np.arange(LENGTH)[None, :] < lengths[:, None]).astype("int32")
    ids = ids * mask
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


@pytest.mark.parametrize("top_layers", [0, 1, 3])
def test_cached_bottom_then_top_equals_whole_classifier(backbone, rng, top_layers):
    from keras_local.benchmark.minilm_classifier import minilm_classifier
    from keras_local.benchmark.minilm_classifier import split_minilm_classifier

    whole = minilm_classifier(backbone, LENGTH)
    bottom, top = split_minilm_classifier(backbone, LENGTH, top_layers)
    top.get_layer("head").set_weights(whole.get_layer("head").get_weights())
    x = token_batch(rng)
    expected = keras.ops.convert_to_numpy(whole(x, training=False))
    # The cache: the bottom's output, stored as NumPy and fed back later.
    hidden = bottom.predict(x, verbose=0)
    assert hidden.shape == (5, LENGTH, 8)
    got = top.predict({"hidden_states": hidden, "padding_mask": x["padding_mask"]},
                      verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The top trains exactly the backbone's own top layers (and the head).
    owned = {id(v) for layer in backbone.transformer_layers[3 - top_layers:]
             for v in layer.trainable_weights}
    head = {id(v) for v in top.get_layer("head").trainable_weights}
    assert {id(v) for v in top.trainable_weights} == owned | head


def test_top_shares_the_backbone_weights(backbone, rng):
    from keras_local.benchmark.minilm_classifier import minilm_classifier
    from keras_local.benchmark.minilm_classifier import split_minilm_classifier

    whole = minilm_classifier(backbone, LENGTH)
    bottom, top = split_minilm_classifier(backbone, LENGTH, 1)
    top.get_layer("head").set_weights(whole.get_layer("head").get_weights())
    x = token_batch(rng)
    kernel = backbone.transformer_layers[-1].trainable_weights[0]
    kernel.assign(kernel + 0.5)  # a change made through the top is the backbone's
    expected = keras.ops.convert_to_numpy(whole(x, training=False))
    got = top.predict({"hidden_states": bottom.predict(x, verbose=0),
                       "padding_mask": x["padding_mask"]}, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("top_layers", [-1, 4, 1.0, True])
def test_bad_top_layers(backbone, top_layers):
    from keras_local.benchmark.minilm_classifier import split_minilm_classifier

    with pytest.raises(ValueError, match="top_layers"):
        split_minilm_classifier(backbone, LENGTH, top_layers)
