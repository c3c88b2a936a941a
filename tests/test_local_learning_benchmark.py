"""`benchmarks/local_learning.py accuracy --backup-dir`: a run cut short and
started again ends where an uninterrupted one does, epoch for epoch."""

import json

import pytest

from tests.conftest import require_data


def test_accuracy_run_resumes_from_its_backup(tmp_path):
    require_data("cifar10_jpeg.npz")
    from benchmarks import local_learning

    args = ["accuracy", "--train", "256", "--test", "64", "--epochs", "3",
            "--batch-size", "64", "--blocks-per-stage", "1", "--modules", "2",
            "--rules", "backprop,man"]
    uninterrupted = local_learning.main(args)

    record = local_learning.EpochClock.on_epoch_end

    def stop_after_recording_epoch_2(clock, epoch, logs=None):
        record(clock, epoch, logs)
        if epoch == 1:
            # Recorded, not yet backed up: the resumed run trains it again.
            raise KeyboardInterrupt

    backup = ["--backup-dir", str(tmp_path / "backup")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local_learning.EpochClock, "on_epoch_end",
                      stop_after_recording_epoch_2)
        with pytest.raises(KeyboardInterrupt):
            local_learning.main(args + backup)
    history = json.loads(
        (tmp_path / "backup" / "backprop_k1" / "history.json").read_text())
    assert len(history["test_accuracy"]) == 2
    resumed = local_learning.main(args + backup)
    # Run again once finished: nothing left to train, the same rows.
    finished = local_learning.main(args + backup)
    for a, b, c in zip(uninterrupted, resumed, finished, strict=True):
        assert a["rule"] == b["rule"] == c["rule"]
        assert len(a["test_accuracy_per_epoch"]) == 3
        assert (a["test_accuracy_per_epoch"] == b["test_accuracy_per_epoch"]
                == c["test_accuracy_per_epoch"])
    assert resumed[0]["resumed_at_epochs"] == [1]  # backprop was cut
    assert resumed[1]["resumed_at_epochs"] == []  # MAN had not started
