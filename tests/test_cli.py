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
