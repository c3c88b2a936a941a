from keras import ops

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.models.target_projection_model import TargetProjectionModel
from keras_local.models.target_projection_model import stateless_block_call
from keras_local.rules import target_projection as tp
from keras_local.rules.precision import loss_dtype


@keras_local_export
class DirectFeedbackAlignmentModel(TargetProjectionModel):
    """Direct feedback alignment (DFA, Nokland 2016) of a stack of Keras
    blocks: the output error is projected straight to every hidden block by
    fixed random matrices.

    The train step runs the whole forward pass, takes the output error
    `e = dL/d y_pred` of the compiled (task) loss, and updates each hidden
    block `i` (a block with trainable weights, other than the last) with the
    gradient of `sum(stop_gradient(e B_i) * h_i)`: for a dense block
    `h = f(x W + b)`, `dW = x^T ((e B_i) * f'(a))`. `B_i`, of shape
    `(output_dim, target_dim)`, is a fixed random non-trainable weight,
    seeded and saved with the model. The output block learns from the task
    loss. Unlike DRTP, the hidden blocks wait for the output (update
    locking); unlike backprop, no error crosses a block through its
    transposed weights.

    Passing a `keras.Sequential` model as `blocks` trains every layer of it
    by DFA: the output error is projected straight to each layer with
    weights. Convolutional and recurrent blocks are handled as in
    `TargetProjectionModel` (`conv_targets`, `recurrent_targets`). Training
    logs `loss` (the task loss) and `block_{i}_loss`: the task loss for the
    output block, the surrogate `sum(e B_i * h_i)` for hidden blocks (its
    gradient is the update; its value is only a diagnostic, not added to
    `loss`).

    Args:
        blocks: list of Keras layers, applied in order; the last one is the
            output block; or a `keras.Sequential` model, whose layers are
            then the blocks (DFA on every layer of a Sequential model).
        num_classes: int, number of classes of the labels (integers or
            one-hot).
        conv_targets: `"feature_map"` or `"pooled"`. Defaults to
            `"feature_map"`.
        recurrent_targets: `"final"` or `"every_step"`. Defaults to
            `"final"`.
        projection_shapes: `None` or one expected feedback target shape (or
            `None`) per block. Defaults to `None`.
        projection_initializer: initializer of the feedback matrices.
            Defaults to `RandomUniform(-1, 1)`.
        seed: int or `None`, seeds the feedback matrices. Defaults to `None`.

    Returns:
        A `keras.Model` whose `predict` gives the output block's output.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = keras_local.datasets.load_mnist()
    x_train = x_train.reshape(-1, 784).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 784).astype("float32") / 255.0
    model = keras_local.DirectFeedbackAlignmentModel(
        blocks=[keras.layers.Dense(500, activation="tanh"),
                keras.layers.Dense(10)],
        num_classes=10, seed=0,
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=1)
    model.evaluate(x_test, y_test)
    ```

    References:
        - Nokland, "Direct Feedback Alignment Provides Learning in Deep
          Neural Networks", NeurIPS 2016.
    """

    _RULES = ("dfa",)

    def __init__(
        self,
        blocks,
        num_classes,
        conv_targets="feature_map",
        recurrent_targets="final",
        projection_shapes=None,
        projection_initializer=None,
        seed=None,
        **kwargs,
    ):
        kwargs.pop("rule", None)
        kwargs.pop("local_loss", None)
        super().__init__(
            blocks,
            num_classes,
            rule="dfa",
            conv_targets=conv_targets,
            recurrent_targets=recurrent_targets,
            projection_shapes=projection_shapes,
            projection_initializer=projection_initializer,
            seed=seed,
            **kwargs,
        )

    def _projection_rows(self, out_shape):
        return self._output_dim

    def build(self, input_shape):
        shape = tuple(input_shape)
        for block in self.blocks:
            if not block.built:
                block.build(shape)
            shape = tuple(block.compute_output_shape(shape))
        # The projections' rows are the output width: check it first.
        self._check_output_shape(shape)
        self._output_dim = int(shape[-1])
        super().build(input_shape)

    def local_grads(
        self, trainable_values, non_trainable_values, x, y, sample_weight
    ):
        tv, ntv = list(trainable_values), list(non_trainable_values)
        projections = self._projection_values(ntv)
        modes = dict(self._projection_layout)
        h = ops.convert_to_tensor(x)
        inputs = []
        for block in self.blocks[:-1]:
            inputs.append(h)
            h, ntv = self._block_call(block, tv, ntv, h, training=True)
            h = backend.stop_gradient(h)
        task_loss, block_grads, y_pred, t_idx, ntv = self._output_block_grads(
            tv, ntv, h, y, sample_weight
        )
        grads = [ops.zeros_like(v) for v in tv]
        grads = self.scatter(grads, t_idx, block_grads)
        error = self.output_error(y, y_pred, sample_weight)
        logs = {f"block_{len(self.blocks) - 1}_loss": task_loss}
        for i, block in enumerate(self.blocks[:-1]):
            if i not in projections:
                continue
            t_idx = self.variable_indices(block, trainable=True)
            n_idx = self.variable_indices(block, trainable=False)
            feedback = ops.matmul(error, ops.cast(projections[i], error.dtype))
            mode = modes[i]

            def surrogate(params, block_input, block_ntv, block=block,
                          mode=mode, feedback=feedback):
                out, _, regularization = stateless_block_call(
                    block, params, block_ntv, block_input, return_losses=True
                )
                # The surrogate's gradient is B e through the block; the
                # regulariser adds its own gradient to it.
                # (In `loss_dtype()`: the block may compute in another dtype.)
                value = tp.dfa_surrogate(tp.readout(out, mode), feedback)
                return ops.cast(value, loss_dtype()) + regularization

            value, hidden_grads = backend.value_and_grad(surrogate)(
                self.gather(tv, t_idx), inputs[i], self.gather(ntv, n_idx)
            )
            grads = self.scatter(grads, t_idx, hidden_grads)
            logs[f"block_{i}_loss"] = value
        return grads, ntv, ops.cast(task_loss, loss_dtype()), y_pred, logs

    def output_error(self, y, y_pred, sample_weight=None):
        """`e = dL/d y_pred` of the compiled loss (detached)."""

        def task(params):
            return self._task_loss(y, params[0], sample_weight)

        _, (error,) = backend.value_and_grad(task)([y_pred])
        return backend.stop_gradient(error)

    def get_config(self):
        config = super().get_config()
        config.pop("rule", None)
        config.pop("local_loss", None)
        return config
