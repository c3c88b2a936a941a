"""`keras.callbacks.BackupAndRestore` resumes an interrupted `fit` of every
rule exactly: weights, optimizer state and each rule's step seeds come back,
so the resumed run ends where an uninterrupted one does."""

import keras
import numpy as np
import pytest

from tests.small_models import BLOCK_RULES, rule_model


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ran = []

    def on_epoch_begin(self, epoch, logs=None):
        self.ran.append(epoch)


@pytest.mark.parametrize("rule", BLOCK_RULES + ("zeroth_order",))
def test_interrupted_fit_resumes_where_it_stopped(rule, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)

    def model():
        m, loss = rule_model(rule)
        m.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
        m.build((None, 6))
        return m

    fit = dict(batch_size=16, epochs=4, verbose=0, shuffle=False)
    uninterrupted = model()
    uninterrupted.fit(x, y, **fit)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    with pytest.raises(RuntimeError, match="interrupted"):
        model().fit(x, y, callbacks=[backup, _Interrupt()], **fit)
    # A fresh process would start from other weights: only the restore can
    # bring the run back on track.
    resumed, epochs = model(), _Epochs()
    resumed.set_weights([w + 1.0 for w in resumed.get_weights()])
    resumed.fit(x, y, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path)), epochs], **fit)
    assert epochs.ran == [2, 3]
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
