"""The `train_step` contract on JAX: pure, `(state, data) -> (logs, state)`."""

import keras
from keras.src.trainers.data_adapters import data_adapter_utils

from keras_local.backend.common import loss_scaled_gradients


def _mapping(variables, values):
    return list(zip(variables, values))


def _collect(scope, variables, values):
    out = []
    for variable, value in zip(variables, values):
        new = scope.get_current_value(variable)
        out.append(value if new is None else new)
    return out


class LocalTrainer:
    """Adapts `LocalModel.local_grads` to Keras's JAX trainer.

    The whole step runs inside a `StatelessScope` that maps every model
    variable to its state value (during `fit` the variables themselves are
    emptied), the optimizer runs through `stateless_apply`.
    """

    def train_step(self, state, data):
        tv, ntv, ov, mv = state
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        learning_rate = None
        if self.reads_learning_rate:
            # The rate of this step, from the optimizer's state (`iterations`
            # for a schedule, the rate variable a callback may have set).
            with keras.StatelessScope(
                state_mapping=_mapping(self.optimizer.variables, ov)
            ):
                learning_rate = keras.ops.convert_to_tensor(
                    self.optimizer.learning_rate
                )
        with keras.StatelessScope(
            state_mapping=_mapping(self.trainable_variables, tv)
            + _mapping(self.non_trainable_variables, ntv)
        ):
            grads, new_ntv, loss, y_pred, logs = self._local_update(
                tv, ntv, x, y, sample_weight, learning_rate
            )
        grads = loss_scaled_gradients(self.optimizer, grads, ov)
        with self._clipping_done():
            new_tv, new_ov = self.optimizer.stateless_apply(ov, grads, tv)
        with keras.StatelessScope(
            state_mapping=_mapping(self.metrics_variables, mv)
        ) as scope:
            out_logs = self._update_local_metrics(
                loss, x, y, y_pred, sample_weight, logs
            )
        new_mv = _collect(scope, self.metrics_variables, mv)
        return out_logs, (new_tv, list(new_ntv), new_ov, new_mv)

    def test_step(self, state, data):
        tv, ntv, mv = state
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        with keras.StatelessScope(
            state_mapping=_mapping(self.trainable_variables, tv)
            + _mapping(self.non_trainable_variables, ntv)
            + _mapping(self.metrics_variables, mv)
        ) as scope:
            loss, y_pred = self._local_evaluate(tv, ntv, x, y, sample_weight)
            out_logs = self._update_local_metrics(
                loss, x, y, y_pred, sample_weight, {}
            )
        new_mv = _collect(scope, self.metrics_variables, mv)
        return out_logs, (tv, ntv, new_mv)
