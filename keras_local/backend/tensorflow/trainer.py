"""The `train_step` contract on TensorFlow: `data -> logs`, stateful."""

import tensorflow as tf
from keras.src.trainers.data_adapters import data_adapter_utils

from keras_local.backend.common import loss_scaled_gradients


def _read(variables):
    # Tensors read once, at the step's start: `v.value` is the `tf.Variable`
    # itself, which each use would read anew, so a graph not compiled by
    # XLA could read a weight after `optimizer.apply` had written it.
    return [tf.convert_to_tensor(v.value) for v in variables]


def _refuse_replicas(model):
    # Keras divides each compiled loss by the number of replicas and lets
    # the optimizer sum the replicas' gradients; local losses written with
    # `keras.ops` are not divided, so each rule would mix summed and
    # averaged parts: refused rather than trained wrong.
    strategy = tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1:
        raise ValueError(
            f"{type(model).__name__} does not train or evaluate under a "
            "`tf.distribute` strategy with more than one replica: its local "
            "losses are not scaled per replica as Keras's compiled losses "
            f"are. Received: {type(strategy).__name__} with "
            f"{strategy.num_replicas_in_sync} replicas in sync. Train on one "
            "device (a single-replica strategy works), or use "
            "`keras.distribution.DataParallel` on the JAX backend."
        )


class LocalTrainer:
    """Adapts `LocalModel.local_grads` to Keras's TensorFlow trainer.

    Variables are updated in place with `optimizer.apply` (TF optimizers
    refuse `stateless_apply`).
    """

    def train_step(self, data):
        _refuse_replicas(self)
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        tv, ntv = _read(self.trainable_variables), _read(self.non_trainable_variables)
        learning_rate = None
        if self.reads_learning_rate:
            # Read before `optimizer.apply` advances `iterations`.
            learning_rate = tf.convert_to_tensor(self.optimizer.learning_rate)
        grads, new_ntv, loss, y_pred, logs = self._local_update(
            tv, ntv, x, y, sample_weight, learning_rate
        )
        grads = loss_scaled_gradients(self.optimizer, grads)
        with self._clipping_done():
            self.optimizer.apply(grads, self.trainable_variables)
        for variable, old, new in zip(self.non_trainable_variables, ntv, new_ntv):
            if new is not old:
                variable.assign(new)
        return self._update_local_metrics(loss, x, y, y_pred, sample_weight, logs)

    def test_step(self, data):
        _refuse_replicas(self)
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        tv, ntv = _read(self.trainable_variables), _read(self.non_trainable_variables)
        loss, y_pred = self._local_evaluate(tv, ntv, x, y, sample_weight)
        return self._update_local_metrics(loss, x, y, y_pred, sample_weight, {})
