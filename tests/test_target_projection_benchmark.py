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
        activation="tanh", width=32, first_width=0, blocks=2,
    )
    keras.utils.set_random_seed(0)
    model = bench["build"]("tpsgd", bench["mlp_blocks"](args), (784,), args, 1e-3)
    model(np.zeros((2, 784), "float32"))
    values = np.concatenate([
        keras.ops.convert_to_numpy(p).ravel() for p in model.projections])
    # Drawn from U(-4, 4): inside the bounds, and most beyond the default's.
    assert np.abs(values).max() <= 4.0
    assert np.mean(np.abs(values) > 1.0) > 0.5


def test_non_positive_projection_scale_is_refused(monkeypatch, capsys):
    main = _benchmark()["main"]
    monkeypatch.setattr("sys.argv", ["target_projection.py", "mnist", "--projection-scale", "0"])
    with pytest.raises(SystemExit):
        main()
    assert "--projection-scale must be > 0. Received: 0.0." in capsys.readouterr().err
