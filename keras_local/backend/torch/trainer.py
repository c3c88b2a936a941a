"""The `train_step` contract on PyTorch: `data -> logs`, stateful."""

import keras
import torch
from keras.src.trainers.data_adapters import data_adapter_utils

from keras_local.backend.common import loss_scaled_gradients


def _as_tensors(data):
    # `train_on_batch` hands numpy arrays to `train_step` on torch.
    return keras.tree.map_structure(
        lambda t: t if t is None else keras.ops.convert_to_tensor(t), data
    )


class LocalTrainer:
    """Adapts `LocalModel.local_grads` to Keras's PyTorch trainer.

    The rule sees detached values; updates run under `torch.no_grad`.
    """

    def train_step(self, data):
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(
            _as_tensors(data)
        )
        with torch.no_grad():
            tv = [v.value.detach() for v in self.trainable_variables]
            ntv = [v.value.detach() for v in self.non_trainable_variables]
            learning_rate = None
            if self.reads_learning_rate:
                learning_rate = keras.ops.convert_to_tensor(
                    self.optimizer.learning_rate
                )
        grads, new_ntv, loss, y_pred, logs = self._local_update(
            tv, ntv, x, y, sample_weight, learning_rate
        )
        with torch.no_grad():
            grads = loss_scaled_gradients(self.optimizer, grads)
            with self._clipping_done():
                self.optimizer.apply(grads, self.trainable_variables)
            for variable, old, new in zip(
                self.non_trainable_variables, ntv, new_ntv
            ):
                if new is not old:
                    variable.assign(new)
            return self._update_local_metrics(
                loss, x, y, y_pred, sample_weight, logs
            )

    def test_step(self, data):
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(
            _as_tensors(data)
        )
        with torch.no_grad():
            tv = [v.value for v in self.trainable_variables]
            ntv = [v.value for v in self.non_trainable_variables]
            loss, y_pred = self._local_evaluate(tv, ntv, x, y, sample_weight)
            return self._update_local_metrics(
                loss, x, y, y_pred, sample_weight, {}
            )
