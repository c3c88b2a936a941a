"""`benchmarks/target_projection.py` in a shrunk mode: it runs, reports one
result per rule, keeps the test set out of `--validation` runs, and builds
what its options say."""

import argparse
import os
import re
import runpy

import keras
import numpy as np
import pytest

from tests.conftest import require_data

_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "target_projection.py")


def _benchmark():
    return runpy.run_path(_SCRIPT)


def test_mnist_validation_run_reports_every_rule(monkeypatch, capsys):
    require_data("mnist.npz")
    main = _benchmark()["main"]
    build, schedules = main.__globals__["build"], []

    def recording_build(rule, blocks, input_shape, args, learning_rate):
        schedules.append(learning_rate)
        return build(rule, blocks, input_shape, args, learning_rate)

    monkeypatch.setitem(main.__globals__, "build", recording_build)
    monkeypatch.setattr("sys.argv", [
        "target_projection.py", "mnist", "--train", "300", "--validation", "100",
        "--epochs", "1", "--width", "16", "--batch", "50", "--standardize",
        "--rules", "backprop,drtp,tpsgd", "--projection-scale", "4", "--cosine",
    ])
    main()
    out = capsys.readouterr().out
    # The held-out part of the training set replaces the test set.
    assert "train=200 validation=100" in out, out
    # --cosine: every rule decays 1e-3 to 0 over 1 epoch of 200 / 50 steps.
    assert "with cosine decay to 0" in out, out
    assert len(schedules) == 3
    for schedule in schedules:
        assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
        assert (schedule.initial_learning_rate, schedule.decay_steps) == (1e-3, 4)
    finals = re.findall(r"^ *(\w+): validation accuracy ([\d.]+)%", out, re.M)
    assert [rule for rule, _ in finals] == ["backprop", "drtp", "tpsgd"], out
    assert all(0.0 <= float(accuracy) <= 100.0 for _, accuracy in finals), out


def test_projection_scale_reaches_the_model():
    bench = _benchmark()
    args = argparse.Namespace(
        local_loss="mse", projection_scale=4.0, lr=1e-3, frozen_blocks=0,
        activation="tanh", width=32, first_width=0, blocks=2, seed=0,
    )
    keras.utils.set_random_seed(0)
    model = bench["build"]("tpsgd", bench["mlp_blocks"](args), (784,), args, 1e-3)
    model(np.zeros((2, 784), "float32"))
    values = np.concatenate([
        keras.ops.convert_to_numpy(p).ravel() for p in model.projections])
    # Drawn from U(-4, 4): inside the bounds, and most beyond the default's.
    assert np.abs(values).max() <= 4.0
    assert np.mean(np.abs(values) > 1.0) > 0.5


@pytest.mark.parametrize("height, width", [(28, 28), (12, 20)])
def test_shifted_images_are_translated_copies(height, width):
    bench = _benchmark()
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(7, height, width)).astype("float32")
    labels = np.arange(7, dtype="int32")
    mean, std = np.float32(0.3), np.float32(0.5)
    data = bench["ShiftedImages"](images, labels, 4, 2, mean, std, seed=0)
    seen = []
    for index in range(len(data)):
        flat, batch_labels = data[index]
        assert flat.dtype == np.float32 and flat.shape[1] == height * width
        for row, label in zip(flat, batch_labels):
            # Undo the standardisation; find the offset: a zero-padded
            # translation of the labelled image by at most 2 pixels per axis.
            shifted = (row * std + mean).reshape(height, width)
            padded = np.pad(images[label], 2)
            offsets = [(dy, dx) for dy in range(5) for dx in range(5)
                       if np.allclose(shifted, padded[dy:dy + height, dx:dx + width], atol=1e-5)]
            assert len(offsets) == 1, label
            seen.append((label, offsets[0]))
    # Every image once per epoch, at several different offsets.
    assert sorted(label for label, _ in seen) == list(range(7))
    assert len({offset for _, offset in seen}) > 1
    # The same seed gives the same stream (every rule sees the same batches).
    first, again = (bench["ShiftedImages"](images, labels, 4, 2, mean, std, seed=0)[0][0]
                    for _ in range(2))
    np.testing.assert_array_equal(first, again)


def test_mnist_shift_trains_every_rule_on_the_shifted_stream(monkeypatch, capsys):
    require_data("mnist.npz")
    main = _benchmark()["main"]
    fits = []
    real_fit = keras.Model.fit

    def recording_fit(self, x=None, *args, **kwargs):
        fits.append(type(x).__name__)
        return real_fit(self, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    monkeypatch.setattr("sys.argv", [
        "target_projection.py", "mnist", "--train", "300", "--validation", "100",
        "--epochs", "1", "--width", "16", "--batch", "50", "--standardize",
        "--rules", "backprop,drtp", "--shift", "1",
    ])
    main()
    out = capsys.readouterr().out
    assert "random shifts of up to 1 px" in out and "train=200 validation=100" in out, out
    assert fits == ["ShiftedImages", "ShiftedImages"], fits


@pytest.mark.parametrize("option, value, message", [
    ("--projection-scale", "0", "--projection-scale must be > 0. Received: 0.0."),
    ("--shift", "-1", "--shift must be between 0 and 13 pixels. Received: -1."),
    ("--shift", "14", "--shift must be between 0 and 13 pixels. Received: 14."),
])
def test_out_of_range_option_is_refused(monkeypatch, capsys, option, value, message):
    main = _benchmark()["main"]
    monkeypatch.setattr("sys.argv", ["target_projection.py", "mnist", option, value])
    with pytest.raises(SystemExit):
        main()
    assert message in capsys.readouterr().err


def test_seed_reaches_weights_projections_and_batches(monkeypatch, capsys):
    require_data("mnist.npz")
    main = _benchmark()["main"]
    seeds = []
    for name in ("TargetProjectionModel", "ShiftedImages"):
        def recording(*args, _real=main.__globals__[name], _name=name, **kwargs):
            seeds.append((_name, kwargs["seed"]))
            return _real(*args, **kwargs)

        monkeypatch.setitem(main.__globals__, name, recording)
    set_random_seed = keras.utils.set_random_seed
    monkeypatch.setattr(keras.utils, "set_random_seed", lambda seed: (
        seeds.append(("weights", seed)), set_random_seed(seed)))
    monkeypatch.setattr("sys.argv", [
        "target_projection.py", "mnist", "--train", "300", "--validation", "100",
        "--epochs", "1", "--width", "16", "--batch", "50", "--shift", "1",
        "--rules", "backprop,tpsgd", "--seed", "3",
    ])
    main()
    assert "seed=3" in capsys.readouterr().out
    # Each rule restarts from the same seed: initial weights, then (tpSGD)
    # its projections, then the shifted-batch stream.
    assert seeds == [("weights", 3), ("ShiftedImages", 3), ("weights", 3),
                     ("TargetProjectionModel", 3), ("ShiftedImages", 3)], seeds
