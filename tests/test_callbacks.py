"""keras_local.callbacks: EpochTimer."""

import time

import keras
import numpy as np
import pytest

import keras_local
from keras_local.callbacks import EpochTimer


class _Events(keras.callbacks.Callback):
    """Records when training batches end and when validation runs."""

    def __init__(self):
        super().__init__()
        self.batch_ends, self.validations = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batch_ends.append(time.perf_counter())

    def on_test_begin(self, logs=None):
        self._validation_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validations.append((self._validation_start, time.perf_counter()))


def _zeroth_order_model():
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model = keras_local.ZerothOrderModel(net, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, 32)


def test_epoch_timer_times_training_steps_and_leaves_out_validation():
    x, y = _data()
    timer, events = EpochTimer(), _Events()
    history = _zeroth_order_model().fit(
        x, y, batch_size=8, epochs=3, validation_data=(x, y), verbose=0,
        callbacks=[timer, events],
    )
    assert len(timer.seconds) == len(timer.intervals) == 3
    assert len(events.validations) == 3 and len(events.batch_ends) == 12
    for epoch, (start, stop) in enumerate(timer.intervals):
        assert timer.seconds[epoch] == pytest.approx(stop - start)
        # Every training batch of the epoch lies inside its interval ...
        for batch_end in events.batch_ends[4 * epoch: 4 * epoch + 4]:
            assert start <= batch_end <= stop
        # ... and the epoch's validation lies after it, the previous one before.
        assert stop <= events.validations[epoch][0]
        if epoch:
            assert events.validations[epoch - 1][1] <= start
    assert history.history["epoch_seconds"] == timer.seconds


def test_epoch_timer_without_validation_and_without_logging():
    x, y = _data()
    timer = EpochTimer(log_key=None)
    model = _zeroth_order_model()
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[timer])
    assert len(timer.seconds) == 2 and all(s > 0 for s in timer.seconds)
    assert "epoch_seconds" not in history.history
    # A second fit starts a new record.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[timer])
    assert len(timer.seconds) == 1


def test_steady_seconds_is_the_median_after_the_compiling_epoch():
    timer = EpochTimer()
    assert timer.steady_seconds is None
    timer.seconds = [9.0]
    assert timer.steady_seconds == 9.0
    timer.seconds = [9.0, 1.0, 3.0, 2.0]
    assert timer.steady_seconds == 2.0


def test_epoch_timer_rejects_a_log_key_that_is_not_a_string():
    with pytest.raises(TypeError, match="Received: log_key=3"):
        EpochTimer(log_key=3)
