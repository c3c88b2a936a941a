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


def test_class_mean_patches_match_a_conv2d_and_a_loop():
    bench = _benchmark()
    rng = np.random.default_rng(2)
    inputs = rng.normal(size=(9, 5, 4, 2)).astype("float32")
    labels = np.array([0, 1, 1, 2, 0, 2, 2, 1, 0])
    means = bench["class_mean_patches"](inputs, labels, (3, 3), num_classes=4)
    # A loop over every position of the zero-padded inputs.
    padded = np.pad(inputs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for k in range(3):
        patches = [padded[n, i:i + 3, j:j + 3].ravel()
                   for n in np.flatnonzero(labels == k) for i in range(5) for j in range(4)]
        np.testing.assert_allclose(means[k], np.mean(patches, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(means[3], 0.0)  # no example of class 3
    # The layout is a Conv2D kernel's: a linear "same" convolution's mean
    # output over a class's positions is that class's mean patch times W.
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False)
    out = keras.ops.convert_to_numpy(conv(inputs))
    kernel = keras.ops.convert_to_numpy(conv.kernel).reshape(18, 3)
    for k in range(3):
        np.testing.assert_allclose(
            means[k] @ kernel, out[labels == k].mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)


def test_fraction_in_span_and_participation_ratio():
    bench = _benchmark()
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(2, 6))
    basis = np.linalg.qr(vectors.T)[0]  # (6, 2), the span's orthonormal basis
    inside = basis @ rng.normal(size=(2, 4))
    outside = rng.normal(size=(6, 4))
    outside -= basis @ (basis.T @ outside)
    fraction = bench["fraction_in_span"]
    assert fraction(vectors, inside) == (pytest.approx(1.0), 2)
    assert fraction(vectors, outside)[0] == pytest.approx(0.0, abs=1e-12)
    expected = np.sum(inside ** 2) / (np.sum(inside ** 2) + np.sum(outside ** 2))
    assert fraction(vectors, inside + outside)[0] == pytest.approx(expected)
    ratio = bench["participation_ratio"]
    assert ratio(np.eye(5)[:, :3]) == pytest.approx(3.0)
    assert ratio(np.outer(rng.normal(size=6), rng.normal(size=4))) == pytest.approx(1.0)
    # Singular values 2 and 1: (4 + 1)^2 / (16 + 1).
    assert ratio(np.diag([2.0, 1.0])) == pytest.approx(25 / 17)


def test_channel_orthogonality_penalty():
    penalty = _benchmark()["ChannelOrthogonality"](0.5)
    orthogonal = np.eye(8, dtype="float32")[:, :4].reshape(2, 2, 2, 4) * 3.0
    assert float(keras.ops.convert_to_numpy(penalty(orthogonal))) == pytest.approx(0.0, abs=1e-6)
    # Every pair of channels the same kernel up to a positive scale: cosine 1.
    same = (np.arange(1.0, 9.0)[:, None] * [1.0, 2.0, 3.0, 4.0]).astype("float32")
    assert float(keras.ops.convert_to_numpy(penalty(same.reshape(2, 2, 2, 4)))) == pytest.approx(0.5)


def test_cifar10_kernel_report_and_orthogonal_penalty(monkeypatch, capsys):
    require_data("cifar10_jpeg.npz")
    main = _benchmark()["main"]
    monkeypatch.setattr("sys.argv", [
        "target_projection.py", "cifar10", "--train", "250", "--validation", "50",
        "--test", "10", "--epochs", "1", "--width", "8", "--conv-targets", "pooled",
        "--rules", "backprop,tpsgd", "--kernel-report", "--orthogonal-penalty", "0.1",
    ])
    main()
    out = capsys.readouterr().out
    assert "channel orthogonality penalty 0.1" in out, out
    reports = re.findall(
        r"^ +(\w+): change in the class-mean span ([\d.]+) \(chance ([\d.]+)\); "
        r"effective directions ([\d.]+) at init, ([\d.]+) trained$", out, re.M)
    assert len(reports) == 4, out  # two convolutions, two rules
    # Ten class means span 10 of the 27 (3 x 3 x 3) and 288 (3 x 3 x 32) dimensions.
    assert [float(r[2]) for r in reports] == [0.370, 0.035] * 2, out
    for _, share, _, initial, trained in reports:
        assert 0.0 <= float(share) <= 1.0
        assert 1.0 <= float(initial) <= 64.0 and 1.0 <= float(trained) <= 64.0


def test_negative_orthogonal_penalty_is_refused(monkeypatch, capsys):
    main = _benchmark()["main"]
    monkeypatch.setattr("sys.argv", [
        "target_projection.py", "cifar10", "--orthogonal-penalty", "-1"])
    with pytest.raises(SystemExit):
        main()
    assert "--orthogonal-penalty must be >= 0. Received: -1.0." in capsys.readouterr().err
