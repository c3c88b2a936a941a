"""The memory probe on PyTorch: a deterministic tensor-allocation tracker."""

import keras
from torch.distributed._tools.mem_tracker import MemTracker

from keras_local.backend.common import MemoryReport
from keras_local.backend.common import build_for_step


def _total(snapshot):
    return sum(device_stats["Total"] for device_stats in snapshot.values())


def train_step_memory(model, x, y, sample_weight=None):
    """Peak temporary memory of one eager train step (torch).

    Measured with `torch.distributed._tools.mem_tracker.MemTracker`: the peak
    of all live tracked tensors during one `train_on_batch`, minus what was
    live when the step began (parameters, optimizer and metric state). This
    runs one real step, so the model's weights change.
    """
    build_for_step(model, x, y, sample_weight)
    x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    model.make_train_function()
    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        before = _total(tracker.get_tracker_snapshot("current"))
        model.train_on_batch(x, y, sample_weight=sample_weight)
        peak = _total(tracker.get_tracker_snapshot("peak"))
    return MemoryReport(
        peak - before,
        "torch MemTracker peak during one train_on_batch minus live state "
        "at its start",
        "torch",
    )
