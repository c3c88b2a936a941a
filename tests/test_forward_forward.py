"""ForwardForwardModel: math, locality, cross-backend agreement, Keras
workflows, bad input and a real MNIST run."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_local import ForwardForwardModel
from keras_local import backend
from keras_local.rules import forward_forward as ff
from keras_local.rules.portable_random import portable_randint
from tests import ff_reference as ref
from tests.conftest import BACKEND
from tests.conftest import require_data
from tests.conftest import to_numpy


def _model(widths=(8, 6), num_classes=3, **kwargs):
    blocks = [keras.layers.Dense(w, activation="relu") for w in widths]
    return ForwardForwardModel(blocks, num_classes=num_classes, **kwargs)


def _data(rng, n=32, d=10, k=3):
    return rng.random((n, d)).astype("float32"), rng.integers(0, k, n).astype("int32")


# ---------------------------------------------------------------- math
def test_goodness_and_losses_match_numpy(rng):
    h = rng.normal(size=(4, 7)).astype("float32")
    np.testing.assert_allclose(to_numpy(ff.goodness(h)), np.mean(h**2, 1), rtol=1e-6)
    g_pos, g_neg = rng.random(5).astype("float32") * 4, rng.random(5).astype("float32") * 4
    np.testing.assert_allclose(
        to_numpy(ff.forward_forward_loss(g_pos, g_neg, 2.0)),
        ref.softplus(2.0 - g_pos) + ref.softplus(g_neg - 2.0), rtol=1e-5,
    )
    np.testing.assert_allclose(
        to_numpy(ff.forward_forward_loss(g_pos, g_neg, loss="symba", alpha=3.0)),
        ref.softplus(-3.0 * (g_pos - g_neg)), rtol=1e-5,
    )
    np.testing.assert_allclose(to_numpy(ff.normalize_length(h, "rms")), ref.rms_normalize(h), rtol=1e-5)
    np.testing.assert_allclose(
        to_numpy(ff.normalize_length(h, "l2")), h / (np.linalg.norm(h, axis=1, keepdims=True) + 1e-4), rtol=1e-5
    )


def test_label_embeddings_match_numpy(rng):
    x = rng.random((4, 6)).astype("float32")
    labels = np.array([0, 2, 1, 2])
    np.testing.assert_allclose(to_numpy(ff.embed_label(x, labels, 3, "overlay", 2.0)), ref.overlay(x, labels, 3, 2.0))
    appended = to_numpy(ff.embed_label(x, labels, 3, "append"))
    np.testing.assert_allclose(appended, np.concatenate([x, np.eye(3)[labels]], 1))


def test_portable_draws_match_numpy_and_negatives_are_wrong():
    seed = np.array([3, 11])
    np.testing.assert_array_equal(
        to_numpy(portable_randint(ops.convert_to_tensor(seed, "int32"), (50,), 7)), ref.hash_randint(seed, 50, 7)
    )
    labels = np.tile(np.arange(10), 100).astype("int32")
    seen = set()
    for s in range(5):
        neg = to_numpy(ff.random_wrong_labels(labels, 10, ops.convert_to_tensor([0, s], "int32")))
        assert np.all(neg != labels) and neg.min() >= 0 and neg.max() < 10
        seen |= set(zip(labels.tolist(), neg.tolist()))
    assert len(seen) == 90  # every wrong label is reachable


def test_hardest_wrong_label():
    scores = np.array([[5.0, 4.0, 1.0], [0.0, 1.0, 3.0]], "float32")
    np.testing.assert_array_equal(to_numpy(ff.hardest_wrong_labels(scores, np.array([0, 1]))), [1, 2])


# ------------------------------------------------- the update itself
def _one_step(model, x, y):
    model.build((None, x.shape[1]))
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    return model.local_grads(tv, ntv, ops.convert_to_tensor(x), ops.convert_to_tensor(y), None)


def test_update_matches_numpy_reference_on_every_backend(rng):
    # Same weights, batch and seed -> the NumPy update, so all three
    # backends agree with each other to 1e-5.
    x, y = _data(rng)
    model = _model(seed=5)
    model.build((None, 10))
    weights = [(rng.normal(size=(10, 8)) * 0.5, rng.normal(size=8) * 0.1),
               (rng.normal(size=(8, 6)) * 0.5, rng.normal(size=6) * 0.1)]
    for block, (w, b) in zip(model.blocks, weights):
        block.set_weights([w.astype("float32"), b.astype("float32")])
    grads, _, loss, _, logs = _one_step(model, x, y)
    seed = to_numpy(model.step_seed_generator.state.value)
    negatives = (y + 1 + ref.hash_randint(seed, len(y), 2)) % 3
    expected = ref.ff_step(weights, x.astype("float64"), y, negatives, 3)
    for i, (block_loss, dw, db) in enumerate(expected):
        np.testing.assert_allclose(to_numpy(grads[2 * i]), dw, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(to_numpy(grads[2 * i + 1]), db, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(to_numpy(logs[f"block_{i}_loss"]), block_loss, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(loss), sum(e[0] for e in expected), rtol=1e-5)


def test_locality_later_blocks_do_not_change_earlier_updates(rng):
    x, y = _data(rng)
    model = _model(seed=1)
    first, _, _, _, _ = _one_step(model, x, y)
    last = model.blocks[-1]
    last.set_weights([w + rng.normal(size=w.shape).astype("float32") for w in last.get_weights()])
    second, _, _, _, _ = _one_step(model, x, y)
    for a, b in zip(first[:2], second[:2]):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert not np.allclose(to_numpy(first[2]), to_numpy(second[2]))


def test_block_gradients_equal_summed_loss_with_stop_gradient(rng):
    x, y = _data(rng)
    model = _model(seed=2, negative_labels="hard")
    grads, _, _, _, _ = _one_step(model, x, y)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    negatives, _ = model.negative_labels_for(tv, ntv, ops.convert_to_tensor(x), ops.convert_to_tensor(y))

    def summed(params):
        h = ops.concatenate([model._embed(x, y), model._embed(x, negatives)], 0)
        total = 0.0
        for i, block in enumerate(model.blocks):
            h, _ = block.stateless_call(params[2 * i: 2 * i + 2], [], ff.normalize_length(ops.stop_gradient(h)))
            g = ff.goodness(h)
            total = total + ops.mean(ff.forward_forward_loss(g[:32], g[32:]))
        return total

    _, reference = backend.value_and_grad(summed)(tv)
    for a, b in zip(grads, reference):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------ Keras workflows
def _compiled(**kwargs):
    model = _model(seed=0, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    return model


def test_fit_logs_per_block_metrics_and_evaluate_accuracy(rng):
    x, y = _data(rng, n=64)
    model = _compiled()
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y))
    for name in ["loss", "block_0_loss", "block_1_positive_goodness", "block_1_negative_goodness",
                 "val_loss", "val_accuracy"]:
        assert len(history.history[name]) == 2
    assert "accuracy" not in history.history  # random negatives: not computed
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    scores = model.predict(x, verbose=0)
    assert scores.shape == (64, 3)
    np.testing.assert_allclose(result["accuracy"], np.mean(scores.argmax(1) == y), atol=1e-6)


def test_hard_negatives_and_readout_report_train_accuracy(rng):
    x, y = _data(rng, n=48)
    for kwargs in ({"negative_labels": "hard"}, {"readout": "softmax"}):
        model = _compiled(**kwargs)
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert "accuracy" in history.history
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)


def test_sample_weight_zero_means_no_update(rng):
    x, y = _data(rng, n=16)
    model = _compiled()
    model.build((None, 10))
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.fit(x, y, sample_weight=np.zeros(16, "float32"), batch_size=16, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_batch_apis_and_callbacks(rng, tmp_path):
    x, y = _data(rng, n=64)
    model = _compiled()
    logs = model.train_on_batch(x[:16], y[:16], return_dict=True)
    assert np.isfinite(logs["loss"]) and "block_0_loss" in logs
    assert "accuracy" in model.test_on_batch(x, y, return_dict=True)
    assert model.predict_on_batch(x).shape == (64, 3)
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_loss"),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=1),
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb")),
    ]
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_data=(x, y), callbacks=callbacks)
    assert (tmp_path / "best.keras").exists()
    assert "block_0_loss" in (tmp_path / "log.csv").read_text().splitlines()[0]
    reloaded = keras.models.load_model(tmp_path / "best.keras")
    assert reloaded.predict(x, verbose=0).shape == (64, 3)


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.x[i * 16:(i + 1) * 16], self.y[i * 16:(i + 1) * 16]


def test_pydataset_and_backend_native_inputs(rng):
    x, y = _data(rng, n=64)
    model = _compiled()
    model.fit(_Batches(x, y), epochs=1, verbose=0)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1, verbose=0)
    if BACKEND == "torch":
        import torch

        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=16
        )
        model.fit(loader, epochs=1, verbose=0)
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


@pytest.mark.skipif(BACKEND == "torch", reason="jit_compile=True is XLA, i.e. JAX and TensorFlow only")
def test_jit_compile(rng):
    x, y = _data(rng, n=32)
    model = _model(seed=0)
    model.compile(optimizer="adam", metrics=["accuracy"], jit_compile=True)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y))
    assert np.isfinite(history.history["loss"][0])


def test_save_load_predict_and_resume(rng, tmp_path):
    x, y = _data(rng, n=64)
    model = _compiled(readout="softmax")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "ff.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, ForwardForwardModel) and loaded.readout == "softmax"
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    a = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history["loss"]
    b = loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_subclassing_with_blocks_built_in_init(rng):
    class TwoBlockFF(ForwardForwardModel):
        def __init__(self, **kwargs):
            kwargs.pop("blocks", None)
            super().__init__(
                blocks=[keras.layers.Dense(12, activation="relu"), keras.layers.Dense(12, activation="relu")],
                num_classes=3, **kwargs,
            )

    x, y = _data(rng)
    model = TwoBlockFF(seed=0)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    assert model.predict(x, verbose=0).shape == (32, 3)


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make_bad, match",
    [
        (lambda x, y: (x, y + 3), r"Labels must lie in \[0, 3\)"),
        (lambda x, y: (x, np.eye(3)[y]), "look one-hot"),
        (lambda x, y: (x.reshape(32, 2, 5), y), "Received: x of shape"),
        (lambda x, y: (np.where(np.arange(10) == 3, np.nan, x).astype("float32"), y), "NaN or infinite"),
        (lambda x, y: (np.where(np.arange(10) == 3, np.inf, x).astype("float32"), y), "NaN or infinite"),
        (lambda x, y: (x, y[:-1]), "different lengths"),
        (lambda x, y: (x, y + 0.5), "non-integer"),
    ],
)
def test_bad_input_raises_and_trains_nothing(rng, make_bad, match):
    x, y = _data(rng)
    model = _compiled()
    model.build((None, 10))
    before = [w.copy() for w in model.get_weights()]
    bad_x, bad_y = make_bad(x, y)
    with pytest.raises(ValueError, match=match):
        model.fit(bad_x, bad_y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.train_on_batch(bad_x, bad_y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="non-empty list"):
        ForwardForwardModel([], num_classes=3)
    with pytest.raises(TypeError, match="keras.layers.Layer"):
        ForwardForwardModel(["dense"], num_classes=3)
    with pytest.raises(ValueError, match="Received: loss='hinge'"):
        _model(loss="hinge")
    with pytest.raises(ValueError, match="num_classes"):
        _model(num_classes=1)
    model = _model(num_classes=12)
    with pytest.raises(ValueError, match="label overlay writes 12 features"):
        model.build((None, 10))
    _model(num_classes=12, label_embedding="append").build((None, 10))


# ------------------------------------------------------------ real data
def test_mnist_reaches_90_percent():
    require_data("mnist.npz")
    from keras_local.datasets import load_mnist

    (x, y), (xt, yt) = load_mnist()
    x = x[:10000].reshape(-1, 784).astype("float32") / 255.0
    xt = xt[:5000].reshape(-1, 784).astype("float32") / 255.0
    model = ForwardForwardModel(
        [keras.layers.Dense(500, activation="relu"), keras.layers.Dense(500, activation="relu")],
        num_classes=10, loss="symba", negative_labels="hard", label_scale=3.0, seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    model.fit(x, y[:10000], batch_size=100, epochs=2, verbose=0)
    accuracy = model.evaluate(xt, yt[:5000], verbose=0, return_dict=True)["accuracy"]
    assert accuracy >= 0.90, f"FF test accuracy {accuracy:.4f} on {BACKEND}"
