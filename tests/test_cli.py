"""`keras-local benchmark` end to end on a tiny run."""

import json

from keras_local.benchmark.registry import available_rules
from keras_local.cli import main
from tests.conftest import BACKEND


def test_benchmark_cli_writes_table_json_and_plot(tmp_path, capsys):
    assert {"backprop", "forward_forward"} <= set(available_rules())
    main(["benchmark", "--dataset", "digits", "--rules", "backprop,forward_forward",
          "--epochs", "2", "--batch-size", "64", "--hidden", "32,32", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "time/BP" in out and "forward_forward" in out
    data = json.loads((tmp_path / f"benchmark_digits_{BACKEND}.json").read_text())
    rows = {r["rule"]: r for r in data["results"]}
    assert rows["backprop"]["time_ratio"] == 1.0
    assert rows["backprop"]["accuracy_per_epoch"] and len(rows["forward_forward"]["epoch_seconds"]) == 2
    if BACKEND == "tensorflow":
        assert rows["forward_forward"]["memory_bytes"] is None
    else:
        assert rows["forward_forward"]["memory_ratio"] > 0
    assert (tmp_path / f"benchmark_digits_{BACKEND}.png").stat().st_size > 1000


def test_unknown_rule_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="Received: 'nope'"):
        main(["benchmark", "--dataset", "digits", "--rules", "nope", "--output-dir", str(tmp_path)])


def test_cosine_schedule_decays_every_rule_to_zero(tmp_path):
    import keras
    import numpy as np
    import pytest

    from keras_local.benchmark.benchmark_spec import scale_learning_rate
    from keras_local.benchmark.runner import learning_rate_schedule

    schedule = learning_rate_schedule(1e-3, "cosine", total_steps=100)
    values = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 50, 100)]
    np.testing.assert_allclose(values, [1e-3, 0.5e-3, 0.0], atol=1e-9)
    scaled = scale_learning_rate(schedule, 10)
    assert float(keras.ops.convert_to_numpy(scaled(50))) == pytest.approx(5e-3)
    assert scale_learning_rate(1e-3, 10) == pytest.approx(1e-2)
    assert learning_rate_schedule(1e-3, "constant", 100) == 1e-3
    with pytest.raises(ValueError, match="Received: schedule='step'"):
        learning_rate_schedule(1e-3, "step", 100)
    main(["benchmark", "--dataset", "digits", "--rules", "backprop", "--epochs", "1",
          "--batch-size", "64", "--hidden", "16", "--schedule", "cosine",
          "--output-dir", str(tmp_path)])


def test_each_rule_is_compared_with_backprop_on_its_own_network(tmp_path):
    import pytest

    from keras_local.benchmark.benchmark_spec import BenchmarkSpec
    from keras_local.benchmark.registry import baseline_of
    from keras_local.benchmark.runner import _add_ratios
    from keras_local.benchmark.runner import with_baselines

    images = BenchmarkSpec(dataset="cifar10", input_shape=(32, 32, 3), num_classes=10)
    vectors = BenchmarkSpec(dataset="digits", input_shape=(64,), num_classes=10)
    assert baseline_of("dgl", images) == "backprop_resnet"
    assert baseline_of("dgl", vectors) == "backprop"
    assert baseline_of("drtp", vectors) == "backprop_tanh"
    assert baseline_of("tpsgd", vectors) == "backprop"
    assert baseline_of("forward_gnn_gcn_sf", vectors) == "backprop_gnn_gcn"
    assert baseline_of("backprop_resnet", images) == "backprop_resnet"
    # The missing baselines run first; ones asked for are not repeated.
    assert with_baselines(["backprop", "dgl", "man", "drtp"], images, log=lambda _: None) == [
        "backprop", "backprop_resnet", "dgl", "man", "backprop_tanh", "drtp"]
    assert with_baselines(["dgl", "backprop_resnet"], images, log=lambda _: None) == [
        "dgl", "backprop_resnet"]
    rows = [dict(rule=r, seconds_per_epoch=s, memory_bytes=m) for r, s, m in (
        ("backprop", 1.0, 100), ("backprop_resnet", 4.0, 400), ("dgl", 2.0, 100))]
    _add_ratios(rows, images)
    assert [(r["time_ratio"], r["memory_ratio"]) for r in rows] == [
        (1.0, 1.0), (1.0, 1.0), (0.5, 0.25)]
    with pytest.raises(ValueError, match=r"Received: input_shape=\(64,\)"):
        main(["benchmark", "--dataset", "digits", "--rules", "backprop_resnet",
              "--epochs", "1", "--output-dir", str(tmp_path)])


def test_drtp_runs_beside_backprop_on_its_tanh_blocks(tmp_path, capsys):
    main(["benchmark", "--dataset", "digits", "--rules", "backprop,drtp", "--epochs", "1",
          "--batch-size", "64", "--hidden", "16", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "time/BP and mem/BP against backprop on the same network: drtp: backprop_tanh" in out
    data = json.loads((tmp_path / f"benchmark_digits_{BACKEND}.json").read_text())
    rows = {r["rule"]: r for r in data["results"]}
    assert list(rows) == ["backprop", "backprop_tanh", "drtp"]
    assert rows["drtp"]["baseline"] == "backprop_tanh"
    assert rows["drtp"]["time_ratio"] == rows["drtp"]["seconds_per_epoch"] / rows["backprop_tanh"]["seconds_per_epoch"]
