"""Wall time of each epoch's training steps."""

import statistics
import time

import keras


class EpochTimer(keras.callbacks.Callback):
    """Records the seconds each epoch spends in its training steps.

    The clock starts when an epoch begins and stops when its training steps
    are done: before validation (so `validation_data` is not counted) or at
    the epoch's end. Before it stops it waits for the device to finish the
    epoch's last update (it reads one variable back to the host): JAX, and
    TensorFlow or torch on an accelerator, return from a step before its
    computation has run, so without the wait the time of queued steps would
    move into the next epoch or into validation.

    The first epoch includes tracing and XLA compilation; `steady_seconds`
    leaves it out. Use this callback to compare a local rule's step time
    with plain backprop on the same model, backend and machine.

    Args:
        log_key: name under which each epoch's seconds are added to the
            epoch logs (and so to `History`), or `None` to add nothing.
            Defaults to `"epoch_seconds"`.

    Attributes:
        seconds: list of floats, one per epoch trained so far.
        intervals: list of `(start, stop)` pairs of `time.perf_counter()`
            readings, one per epoch.

    Example:

    ```python
    (x, y), (x_val, y_val) = keras_local.datasets.load_mnist()
    x, x_val = x.reshape(-1, 784) / 255.0, x_val.reshape(-1, 784) / 255.0
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    timer = keras_local.callbacks.EpochTimer()
    model.fit(x, y, epochs=5, validation_data=(x_val, y_val), callbacks=[timer])
    print(timer.seconds, timer.steady_seconds)
    ```

    References:
        - The timing protocol of `benchmarks/` (`keras-local benchmark`).
    """

    def __init__(self, log_key="epoch_seconds"):
        super().__init__()
        if log_key is not None and not isinstance(log_key, str):
            raise TypeError(
                "`log_key` must be a string or None. Received: "
                f"log_key={log_key!r} of type {type(log_key).__name__}."
            )
        self.log_key = log_key
        self.seconds = []
        self.intervals = []
        self._start = None

    @property
    def steady_seconds(self):
        """Median seconds of the epochs after the first (which compiles);
        the first epoch's seconds if only one ran; `None` before any."""
        if not self.seconds:
            return None
        later = self.seconds[1:] or self.seconds
        return statistics.median(later)

    def on_train_begin(self, logs=None):
        self.seconds, self.intervals, self._start = [], [], None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def _wait_for_device(self):
        # Every variable of a step comes out of the same program (or, on
        # torch, the same stream): reading one back waits for all of them.
        variables = self.model.variables
        if variables:
            keras.ops.convert_to_numpy(variables[0].value)

    def _stop(self):
        if self._start is None:
            return
        self._wait_for_device()
        stop = time.perf_counter()
        self.intervals.append((self._start, stop))
        self.seconds.append(stop - self._start)
        self._start = None

    def on_test_begin(self, logs=None):
        self._stop()  # only validation inside `fit` runs between the two

    def on_epoch_end(self, epoch, logs=None):
        self._stop()
        if self.log_key is not None and logs is not None and self.seconds:
            logs[self.log_key] = self.seconds[-1]
