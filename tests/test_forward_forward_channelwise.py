"""Channel-wise competitive Forward-Forward (goodness="channelwise"): one
pass per block, class goodness from channel groups, no negative data."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_local import ForwardForwardModel
from keras_local.rules import forward_forward as ff
from tests import ff_reference as ref
from tests.conftest import to_numpy


def _np_class_goodness(h, k, reduction="mean"):
    grouped = (h**2).reshape(len(h), -1, k, h.shape[-1] // k)
    return grouped.sum(axis=(1, 3)) if reduction == "sum" else grouped.mean(axis=(1, 3))


def _np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_channelwise_goodness_matches_numpy(rng):
    h = rng.normal(size=(3, 4, 5, 6)).astype("float32")  # 6 channels, 3 classes
    for reduction in ("mean", "sum"):
        np.testing.assert_allclose(
            to_numpy(ff.channelwise_goodness(h, 3, reduction)), _np_class_goodness(h, 3, reduction), rtol=1e-5
        )
    dense = rng.normal(size=(4, 8)).astype("float32")
    expected = np.stack([np.mean(dense[:, 2 * k: 2 * k + 2] ** 2, axis=1) for k in range(4)], axis=1)
    np.testing.assert_allclose(to_numpy(ff.channelwise_goodness(dense, 4)), expected, rtol=1e-5)


def test_channelwise_losses_match_numpy(rng):
    g = rng.random((5, 4)).astype("float32") * 3
    y = np.array([0, 3, 1, 1, 2])
    competitive = -_np_log_softmax(g.astype("float64"))[np.arange(5), y]
    np.testing.assert_allclose(to_numpy(ff.channelwise_loss(g, y, loss="competitive")), competitive, rtol=1e-5)
    g_pos = g[np.arange(5), y]
    g_neg = (g.sum(1) - g_pos) / 3
    np.testing.assert_allclose(
        to_numpy(ff.channelwise_loss(g, y, 2.0, "softplus")),
        ref.softplus(2.0 - g_pos) + ref.softplus(g_neg - 2.0), rtol=1e-5,
    )
    np.testing.assert_allclose(
        to_numpy(ff.channelwise_loss(g, y, loss="symba", alpha=3.0)), ref.softplus(-3.0 * (g_pos - g_neg)), rtol=1e-5
    )


def _dense_model(**kwargs):
    return ForwardForwardModel(
        [keras.layers.Dense(6, activation="relu"), keras.layers.Dense(9, activation="relu")],
        num_classes=3, goodness="channelwise", loss="competitive", seed=0, **kwargs,
    )


def _one_step(model, x, y):
    model.build((None,) + x.shape[1:])
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    return model.local_grads(tv, ntv, ops.convert_to_tensor(x), ops.convert_to_tensor(y), None)


def _np_competitive_step(weights, x, y, k):
    """Per-block (loss, dW, db) of the CwC loss on dense ReLU blocks."""
    out, h = [], x
    for w, b in weights:
        inputs = ref.rms_normalize(h)
        z = inputs @ w + b
        h = np.maximum(z, 0.0)
        g = _np_class_goodness(h, k)
        log_p = _np_log_softmax(g)
        loss = -np.mean(log_p[np.arange(len(x)), y])
        dg = (np.exp(log_p) - np.eye(k)[y]) / len(x)
        group = h.shape[1] // k
        dh = np.repeat(dg, group, axis=1) * 2.0 * h / group
        dz = dh * (z > 0)
        out.append((loss, inputs.T @ dz, dz.sum(0)))
    return out


def test_update_matches_numpy_reference(rng):
    x = rng.normal(size=(16, 5)).astype("float32")
    y = rng.integers(0, 3, 16)
    model = _dense_model()
    model.build((None, 5))
    weights = [(rng.normal(size=(5, 6)) * 0.7, rng.normal(size=6) * 0.1),
               (rng.normal(size=(6, 9)) * 0.7, rng.normal(size=9) * 0.1)]
    for block, (w, b) in zip(model.blocks, weights):
        block.set_weights([w.astype("float32"), b.astype("float32")])
    grads, _, loss, scores, logs = _one_step(model, x, y)
    expected = _np_competitive_step(weights, x.astype("float64"), y, 3)
    for i, (block_loss, dw, db) in enumerate(expected):
        np.testing.assert_allclose(to_numpy(grads[2 * i]), dw, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(to_numpy(grads[2 * i + 1]), db, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(to_numpy(logs[f"block_{i}_loss"]), block_loss, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(loss), sum(e[0] for e in expected), rtol=1e-5)
    # The train-step scores are the prediction's: summed class goodness.
    np.testing.assert_allclose(to_numpy(scores), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_locality_later_blocks_do_not_change_earlier_updates(rng):
    x = rng.normal(size=(16, 5)).astype("float32")
    y = rng.integers(0, 3, 16)
    model = _dense_model()
    first = _one_step(model, x, y)[0]
    last = model.blocks[-1]
    last.set_weights([w + rng.normal(size=w.shape).astype("float32") for w in last.get_weights()])
    second = _one_step(model, x, y)[0]
    for a, b in zip(first[:2], second[:2]):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert not np.allclose(to_numpy(first[2]), to_numpy(second[2]))


def _conv_bn_block(filters, pool):
    layers = [keras.layers.Conv2D(filters, 3, padding="same"), keras.layers.ReLU()]
    if pool:
        layers.append(keras.layers.MaxPooling2D(2))
    layers.append(keras.layers.BatchNormalization(momentum=0.5))
    return keras.Sequential(layers)


def test_conv_batchnorm_fit_predict_save_load_resume(rng, tmp_path):
    x = rng.random((32, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, 32)
    model = ForwardForwardModel(
        [_conv_bn_block(6, True), _conv_bn_block(9, False)], num_classes=3,
        goodness="channelwise", loss="competitive", skip_first_block=True, seed=0,
    )
    model.compile(optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y))
    for name in ("block_1_loss", "block_1_positive_goodness", "accuracy", "val_accuracy"):
        assert name in history.history
    bn = model.blocks[0].layers[-1]
    assert not np.allclose(to_numpy(bn.moving_mean), 0.0)  # BN state follows training
    scores = model.predict(x, verbose=0)
    assert scores.shape == (32, 3)
    model.save(tmp_path / "cwc.keras")
    loaded = keras.models.load_model(tmp_path / "cwc.keras")
    assert loaded.goodness == "channelwise" and loaded.label_embedding is None
    np.testing.assert_array_equal(scores, loaded.predict(x, verbose=0))
    a = model.train_on_batch(x[:16], y[:16], return_dict=True)["loss"]
    b = loaded.train_on_batch(x[:16], y[:16], return_dict=True)["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-5)


@pytest.mark.parametrize("loss", ["softplus", "symba"])
def test_forward_forward_losses_on_class_groups_train(rng, loss):
    x = rng.normal(size=(32, 5)).astype("float32")
    y = rng.integers(0, 3, 32)
    model = ForwardForwardModel(
        [keras.layers.Dense(6, activation="relu")], num_classes=3,
        goodness="channelwise", loss=loss, threshold="width", seed=0,
    )
    model.compile(optimizer="adam")
    model.build((None, 5))
    assert model._thresholds == [2.0]  # the width of one class group
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_bad_channelwise_configurations_are_rejected():
    with pytest.raises(ValueError, match="multiple of 3"):
        ForwardForwardModel([keras.layers.Dense(4)], num_classes=3, goodness="channelwise").build((None, 5))
    with pytest.raises(ValueError, match="label_embedding='append'"):
        ForwardForwardModel([keras.layers.Dense(6)], num_classes=3, goodness="channelwise",
                            label_embedding="append")
    with pytest.raises(ValueError, match="negative_labels='hard'"):
        ForwardForwardModel([keras.layers.Dense(6)], num_classes=3, goodness="channelwise",
                            negative_labels="hard")
    with pytest.raises(ValueError, match="competitive"):
        ForwardForwardModel([keras.layers.Dense(6)], num_classes=3, loss="competitive")
    with pytest.raises(ValueError, match="goodness"):
        ForwardForwardModel([keras.layers.Dense(6)], num_classes=3, goodness="pixelwise")


def test_scored_blocks_predicts_from_the_top_blocks_only(rng):
    x = rng.normal(size=(8, 5)).astype("float32")
    model = _dense_model(scored_blocks=1)
    model.build((None, 5))
    h = model.blocks[0](ff.normalize_length(ops.convert_to_tensor(x)))
    top = model.blocks[1](ff.normalize_length(h))
    np.testing.assert_allclose(
        model.predict(x, verbose=0), _np_class_goodness(to_numpy(top), 3), rtol=1e-5, atol=1e-7
    )
    for bad in ({"scored_blocks": 0}, {"scored_blocks": 3}, {"scored_blocks": 1, "skip_first_block": True}):
        with pytest.raises(ValueError, match="scored_blocks"):
            _dense_model(**bad)


def test_channelwise_conv_benchmark_runs_tiny(tmp_path):
    """The benchmark's channel-wise FF row and its backprop twin run and
    record the same schedule (cosine decay to 0)."""
    import os
    import runpy

    from tests.conftest import require_data

    require_data("cifar10_jpeg.npz")
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "forward_forward_family.py")
    main = runpy.run_path(path)["main"]
    recorder = main([
        "--experiment", "conv", "--conv-variants", "channelwise", "--train", "200",
        "--test", "100", "--epochs", "1", "--cwc-filters", "10,20", "--out", str(tmp_path / "c.json"),
    ])
    rules = [r["rule"] for r in recorder.runs]
    assert rules == ["FF, channel-wise competitive, conv-BN blocks", "backprop, same conv-BN blocks"]
    assert all(r["cosine_floor"] == 0.0 and 0.0 <= r["test_accuracy"] <= 1.0 for r in recorder.runs)
