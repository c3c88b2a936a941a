"""The `train_step` contract on TensorFlow: `data -> logs`, stateful."""

import tensorflow as tf
from keras.src.trainers.data_adapters import data_adapter_utils

from keras_local.backend.common import loss_scaled_gradients


def _read(variables):
    # Tensors read once, at the step's start: `v.value` is the `tf.Variable`
    # itself, which each use would read anew, so a graph not compiled by
    # XLA could read a weight after `optimizer.apply` had written it.
    return [tf.convert_to_tensor(v.value) for v in variables]


def build_scope(model):
    return model.distribute_strategy.scope()


def num_replicas(model):
    return model.distribute_strategy.num_replicas_in_sync


def _num_replicas():
    # Inside a step: the strategy whose replica runs it.
    return tf.distribute.get_strategy().num_replicas_in_sync


def per_replica_loss(loss):
    # Under a `tf.distribute` strategy Keras's `Loss` divides each value by
    # the number of replicas (the optimizer sums their gradients); local
    # losses written with `keras.ops` are not divided, so the compiled loss
    # is multiplied back, every loss is a mean over the replica's batch, and
    # the trainer divides the summed gradients once.
    replicas = _num_replicas()
    if replicas == 1:
        return loss
    return loss * tf.cast(replicas, loss.dtype)


def replica_mean(value):
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)


def _divided_for_replica_sum(grads):
    # `optimizer.apply` sums the replicas' gradients; their mean is the
    # gradient of the global batch's mean loss, as on one device.
    replicas = _num_replicas()
    if replicas == 1:
        return grads

    def mean(g):
        if isinstance(g, tf.IndexedSlices):
            return tf.IndexedSlices(mean(g.values), g.indices, g.dense_shape)
        return None if g is None else g / tf.cast(replicas, g.dtype)

    return [mean(g) for g in grads]


class LocalTrainer:
    """Adapts `LocalModel.local_grads` to Keras's TensorFlow trainer.

    Variables are updated in place with `optimizer.apply` (TF optimizers
    refuse `stateless_apply`). Under a `tf.distribute` strategy each
    replica runs the rule on its share of the batch and the optimizer
    applies the mean of their gradients, as Keras's own step does.
    """

    def train_step(self, data):
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        tv, ntv = _read(self.trainable_variables), _read(self.non_trainable_variables)
        learning_rate = None
        if self.reads_learning_rate:
            # Read before `optimizer.apply` advances `iterations`.
            learning_rate = tf.convert_to_tensor(self.optimizer.learning_rate)
        grads, new_ntv, loss, y_pred, logs = self._local_update(
            tv, ntv, x, y, sample_weight, learning_rate
        )
        grads = loss_scaled_gradients(self.optimizer, _divided_for_replica_sum(grads))
        with self._clipping_done():
            self.optimizer.apply(grads, self.trainable_variables)
        for variable, old, new in zip(self.non_trainable_variables, ntv, new_ntv):
            if new is not old:
                variable.assign(new)
        return self._update_local_metrics(loss, x, y, y_pred, sample_weight, logs)

    def test_step(self, data):
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        tv, ntv = _read(self.trainable_variables), _read(self.non_trainable_variables)
        loss, y_pred = self._local_evaluate(tv, ntv, x, y, sample_weight)
        return self._update_local_metrics(loss, x, y, y_pred, sample_weight, {})
