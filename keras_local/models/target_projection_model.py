import keras
import numpy as np
from keras import ops

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.models.argument_checks import check_blocks
from keras_local.models.argument_checks import check_num_classes
from keras_local.models.local_model import LocalModel
from keras_local.models.local_model import check_finite
from keras_local.models.local_model import sum_losses
from keras_local.rules import target_projection as tp
from keras_local.rules.labels import check_choice
from keras_local.rules.labels import check_integer_labels
from keras_local.rules.ordering import after
from keras_local.rules.precision import loss_dtype

CONV_TARGETS = ("feature_map", "pooled")
RECURRENT_TARGETS = ("final", "every_step")


def default_projection_initializer():
    return keras.initializers.RandomUniform(minval=-1.0, maxval=1.0)


@keras_local_export
class TargetProjectionModel(LocalModel):
    """Direct random target projection (DRTP) and tpSGD for a stack of
    Keras blocks: every hidden block learns towards a fixed random
    projection of the one-hot label, with no feedback pathway.

    Each hidden block `i` (a block with trainable weights, other than the
    last) gets a fixed random matrix `B_i` of shape `(num_classes,
    target_dim)`, a non-trainable weight, seeded and saved with the model.
    The projected target of a batch is `y* B_i` (`y*` the one-hot labels).
    The train step forwards one block on the detached output of the block
    below, takes that block's local gradient at once, and hands its detached
    output to the next block: no gradient ever crosses a block boundary, so
    no block waits for the ones above it (no update locking). The last block
    (the output block) learns from the compiled (task) loss on its detached
    input.

    - `rule="drtp"` (Frenkel et al. 2021): the update of a block is the
      gradient of `-mean_batch(sum(y* B_i * h_i))`, i.e. the fixed
      modulatory signal `-(y* B_i)` through the derivative of the block's
      own nonlinearity (for a dense block `h = f(x W + b)`:
      `dW = -x^T ((y* B_i) * f'(a)) / batch`). Give DRTP blocks a
      bounded nonlinearity (`tanh`, as in the paper): on ReLU blocks the
      fixed signal drives every unit with a negative target to zero, where
      it stops learning.
    - `rule="tpsgd"` (Lomnitz et al. 2022): any Keras loss between the
      projected target and the block output, `local_loss` (`"mse"` compares
      `h` with `y* B_i`; `"categorical_crossentropy"` the logits `h` with
      `softmax(y* B_i)`; `"binary_crossentropy"` with `sigmoid(y* B_i)`).

    What a block output is compared with: dense outputs `(batch, units)` as
    they are; convolutional outputs either the whole feature map
    (`conv_targets="feature_map"`, flattened) or its spatial mean
    (`"pooled"`, one target per channel; with `conv_target_grid=g > 1`, the
    mean of each cell of a `g x g` grid, `g * g` targets per channel);
    recurrent layers (`SimpleRNN`,
    `GRU`, `LSTM`) at the final state (`recurrent_targets="final"`) or at
    every time step against the same target (`"every_step"`, for layers
    built with `return_sequences=True`; a layer that returns only its final
    state is always compared there). Blocks without weights (`Flatten`, pooling)
    are passed through.

    Training logs `loss` (the sum of the block losses) and
    `block_{i}_loss` for every trained block, the last one being the task
    loss. `evaluate` reports the compiled loss; `predict` returns the
    output block's output.

    Args:
        blocks: list of Keras layers (a block may be a `keras.Sequential`),
            applied in order; the last one is the output block. A
            `keras.Sequential` model in place of the list stands for the
            list of its layers (every layer with weights becomes a block).
        num_classes: int, number of classes of the labels. Labels are
            integers `(batch,)` or one-hot `(batch, num_classes)`.
        rule: `"drtp"` or `"tpsgd"`. Defaults to `"drtp"`.
        local_loss: name of a Keras loss for `"tpsgd"` (`"mse"`, `"mae"`,
            `"huber"`, `"categorical_crossentropy"`, `"binary_crossentropy"`,
            ...). Must be `None` for `"drtp"`, whose update is fixed.
            Defaults to `None` (`"mse"` under `"tpsgd"`).
        conv_targets: `"feature_map"` or `"pooled"`. Defaults to
            `"feature_map"`.
        conv_target_grid: int >= 1, with `conv_targets="pooled"`: the
            number of equal cells per spatial axis the feature map is
            averaged over (`1`: the global mean per channel; `2`: a `2 x 2`
            grid). Must divide every spatial size. Defaults to `1`.
        recurrent_targets: `"final"` or `"every_step"`. Defaults to
            `"final"`.
        projection_shapes: `None`, or a list with one entry per block: `None`
            (inferred) or the expected target shape of that block's
            projection, e.g. `(256,)`; a mismatch with the block output
            raises a `ValueError` at build. Defaults to `None`.
        projection_initializer: initializer of the projection matrices.
            DRTP's update uses only the sign of the projected target; under
            `"tpsgd"` with a regression loss the projected values are the
            targets themselves, so the scale matters (targets beyond a
            bounded activation's range push its units to saturate).
            Defaults to `RandomUniform(-1, 1)`.
        seed: int or `None`, seeds the projection matrices. Defaults to
            `None`.

    Returns:
        A `keras.Model` whose `predict` gives the output block's output.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = keras_local.datasets.load_mnist()
    x_train = x_train.reshape(-1, 784).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 784).astype("float32") / 255.0
    model = keras_local.TargetProjectionModel(
        blocks=[keras.layers.Dense(500, activation="tanh"),
                keras.layers.Dense(500, activation="tanh"),
                keras.layers.Dense(10)],
        num_classes=10, rule="drtp", seed=0,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=100, epochs=1)
    model.evaluate(x_test, y_test)
    ```

    References:
        - Frenkel, Lefebvre & Bol, "Learning Without Feedback: Fixed Random
          Learning Signals Allow for Feedforward Training of Deep Neural
          Networks", Frontiers in Neuroscience, 2021.
        - Lomnitz et al., "Learning with Local Gradients at the Edge", 2022.
    """

    serialized_arguments = ("blocks",)

    _RULES = tp.RULES

    adds_regularization_losses = True

    def __init__(
        self,
        blocks,
        num_classes,
        rule="drtp",
        local_loss=None,
        conv_targets="feature_map",
        conv_target_grid=1,
        recurrent_targets="final",
        projection_shapes=None,
        projection_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        if isinstance(blocks, keras.Sequential):
            blocks = list(blocks.layers)
        blocks = check_blocks(
            blocks, minimum=2,
            expected="a list of at least two Keras layers: hidden blocks and the output block",
        )
        check_num_classes(num_classes)
        check_choice("rule", rule, self._RULES)
        if rule == "drtp" and local_loss is not None:
            raise ValueError(
                "`local_loss` is only used by rule='tpsgd'; DRTP's update is "
                f"fixed. Received: rule='drtp', local_loss={local_loss!r}. "
                "Use rule='tpsgd' or drop `local_loss`."
            )
        if rule == "tpsgd":
            local_loss = tp.check_local_loss(
                "mse" if local_loss is None else local_loss
            )
        check_choice("conv_targets", conv_targets, CONV_TARGETS)
        if (
            isinstance(conv_target_grid, bool)
            or not isinstance(conv_target_grid, (int, np.integer))
            or conv_target_grid < 1
        ):
            raise ValueError(
                "`conv_target_grid` must be an int >= 1. Received: "
                f"conv_target_grid={conv_target_grid!r}."
            )
        if conv_target_grid != 1 and conv_targets != "pooled":
            raise ValueError(
                "`conv_target_grid` only applies to conv_targets='pooled'. "
                f"Received: conv_targets={conv_targets!r}, "
                f"conv_target_grid={conv_target_grid!r}. Pass "
                "conv_targets='pooled' or leave the grid at 1."
            )
        check_choice("recurrent_targets", recurrent_targets, RECURRENT_TARGETS)
        if projection_shapes is not None:
            if (
                not isinstance(projection_shapes, (list, tuple))
                or len(projection_shapes) != len(blocks)
            ):
                raise ValueError(
                    "`projection_shapes` must be a list with one entry (a "
                    "shape or None) per block. Received: projection_shapes="
                    f"{projection_shapes!r} for {len(blocks)} blocks."
                )
            projection_shapes = [
                None if s is None else tuple(int(d) for d in s)
                for s in projection_shapes
            ]
        self.blocks = blocks
        self.num_classes = int(num_classes)
        self.rule = rule
        self.local_loss = local_loss
        self.conv_targets = conv_targets
        self.conv_target_grid = int(conv_target_grid)
        self.recurrent_targets = recurrent_targets
        self.projection_shapes = projection_shapes
        if projection_initializer is None:
            projection_initializer = default_projection_initializer()
        self.projection_initializer = keras.initializers.get(
            projection_initializer
        )
        self._projection_layout = ()

    # ------------------------------------------------------------------ #
    def build(self, input_shape):
        shape = tuple(input_shape)
        layout = []
        projections = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if not block.built:
                block.build(shape)
            out_shape = tuple(block.compute_output_shape(shape))
            if i < last and block.trainable_weights:
                mode = self._readout_mode(i, block, out_shape)
                dim = tp.readout_dim(out_shape[1:], mode, self.conv_target_grid)
                target_shape = (
                    tuple(out_shape[1:]) if mode == "flat" else (dim,)
                )
                self._check_projection_shape(i, target_shape, out_shape, mode)
                variable = self.add_weight(
                    shape=(self._projection_rows(out_shape), dim),
                    initializer=self._block_initializer(i),
                    trainable=False,
                    name=f"projection_{i}",
                )
                projections.append(variable)
                layout.append((i, mode))
            shape = out_shape
        self._check_output_shape(shape)
        self._projection_layout = tuple(layout)
        self._projections = projections
        self.built = True

    def _projection_rows(self, out_shape):
        return self.num_classes

    def _check_output_shape(self, shape):
        # The task loss compares the output block with the labels: a width
        # other than the number of classes would index past the logits.
        binary = self.num_classes == 2 and len(shape) == 2 and shape[-1] == 1
        if len(shape) != 2 or (shape[-1] != self.num_classes and not binary):
            raise ValueError(
                f"The output block of {type(self).__name__} must give one "
                f"score per class, (batch, {self.num_classes}) (or (batch, 1) "
                "for two classes with a sigmoid). Received: output block "
                f"{self.blocks[-1].name} of shape {shape} with num_classes="
                f"{self.num_classes}. End the stack with "
                f"`Dense({self.num_classes})` or fix `num_classes`."
            )

    def _block_initializer(self, i):
        config = keras.initializers.serialize(self.projection_initializer)
        initializer = keras.initializers.deserialize(config)
        if hasattr(initializer, "seed") and self.seed is not None:
            initializer.seed = int(self.seed) * 1009 + i + 1
            if hasattr(initializer, "_init_seed"):
                initializer._init_seed = initializer.seed
        return initializer

    def _readout_mode(self, i, block, out_shape):
        rank = len(out_shape)
        recurrent = isinstance(block, keras.layers.RNN) or hasattr(
            block, "return_sequences"
        )
        if recurrent and rank == 3:
            return "sequence" if self.recurrent_targets == "every_step" else (
                "final"
            )
        if rank == 2:
            return "flat"
        if recurrent and rank == 3:
            return "final"
        if self.conv_targets == "feature_map":
            return "flat"
        return "grid" if self.conv_target_grid > 1 else "pooled"

    def _check_projection_shape(self, i, target_shape, out_shape, mode):
        if self.projection_shapes is None:
            return
        expected = self.projection_shapes[i]
        if expected is None:
            return
        if int(np.prod(expected)) != int(np.prod(target_shape)) or (
            len(expected) > 1 and tuple(expected) != tuple(target_shape)
        ):
            raise ValueError(
                f"The projection of block {i} ({self.blocks[i].name}) cannot "
                f"match its output. Received: projection shape {expected}, "
                f"while block output {out_shape} under readout '{mode}' needs "
                f"a target of shape {target_shape}. Fix `projection_shapes` "
                "(or pass None there to infer it)."
            )

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for block in self.blocks:
            shape = tuple(block.compute_output_shape(shape))
        return shape

    def call(self, x, training=False):
        h = x
        for block in self.blocks:
            h = block(h, training=training)
        return h

    def _block_call(self, block, tv, ntv, inputs, training=True):
        """`layer_call` for any layer (some, like `Conv2D`, take no
        `training` argument)."""
        t_idx = self.variable_indices(block, trainable=True)
        n_idx = self.variable_indices(block, trainable=False)
        out, new_block_ntv = stateless_block_call(
            block, self.gather(tv, t_idx), self.gather(ntv, n_idx), inputs,
            training=training,
        )
        return out, self.scatter(ntv, n_idx, new_block_ntv)

    @property
    def projections(self):
        """The fixed projection matrices, one per trained hidden block."""
        return list(getattr(self, "_projections", []))

    # ------------------------------------------------------------------ #
    # The rule.
    # ------------------------------------------------------------------ #
    def gradient_groups(self):
        # Each block learns from its own target (DFA: its own projection of
        # the output error), the output block from the task loss.
        return list(self.blocks)

    def local_log_names(self):
        return [f"block_{i}_loss" for i in range(len(self.blocks))]

    def _projection_values(self, ntv):
        position = {id(v): k for k, v in enumerate(self.non_trainable_variables)}
        return {
            i: ntv[position[id(var)]]
            for (i, mode), var in zip(self._projection_layout, self._projections)
        }

    def _task_loss(self, y, y_pred, sample_weight):
        if self._compile_loss is None:
            raise ValueError(
                f"{type(self).__name__} trains its output block on the task "
                "loss. Received: a model compiled without `loss`. Pass e.g. "
                "`loss=keras.losses.SparseCategoricalCrossentropy("
                "from_logits=True)` to `compile`."
            )
        return self.compiled_loss(y, y_pred, sample_weight)

    def _hidden_loss(self, h, target, sample_weight):
        if self.rule == "drtp":
            return tp.drtp_loss(h, target, sample_weight)
        return tp.tpsgd_loss(h, target, self.local_loss, sample_weight)

    def _output_block_grads(self, tv, ntv, h, y, sample_weight):
        block = self.blocks[-1]
        t_idx = self.variable_indices(block, trainable=True)
        n_idx = self.variable_indices(block, trainable=False)

        def output_loss(params, inputs, block_ntv):
            out, new_block_ntv, regularization = stateless_block_call(
                block, params, block_ntv, inputs, return_losses=True
            )
            loss = self._task_loss(y, out, sample_weight) + regularization
            return loss, (out, new_block_ntv)

        (loss, (y_pred, new_block_ntv)), block_grads = backend.value_and_grad(
            output_loss, has_aux=True
        )(self.gather(tv, t_idx), h, self.gather(ntv, n_idx))
        return loss, block_grads, y_pred, t_idx, self.scatter(
            ntv, n_idx, new_block_ntv
        )

    def local_grads(
        self, trainable_values, non_trainable_values, x, y, sample_weight
    ):
        tv, ntv = list(trainable_values), list(non_trainable_values)
        projections = self._projection_values(ntv)
        modes = dict(self._projection_layout)
        one_hot = tp.one_hot_labels(y, self.num_classes)
        h = ops.convert_to_tensor(x)
        grads = [ops.zeros_like(v) for v in tv]
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        logs = {}
        for i, block in enumerate(self.blocks[:-1]):
            if i not in projections:
                h, ntv = self._block_call(block, tv, ntv, h)
                h = backend.stop_gradient(h)
                continue
            t_idx = self.variable_indices(block, trainable=True)
            n_idx = self.variable_indices(block, trainable=False)
            # Tied to `h` so that a compiler cannot build every block's
            # (batch, width) target up front.
            target = tp.project_targets(one_hot, after(projections[i], [h]))
            mode = modes[i]

            def block_loss(params, inputs, block_ntv, block=block, mode=mode,
                           target=target):
                out, new_block_ntv, regularization = stateless_block_call(
                    block, params, block_ntv, inputs, return_losses=True
                )
                # (The block may compute in another dtype than the model.)
                loss = ops.cast(self._hidden_loss(
                    tp.readout(out, mode, self.conv_target_grid), target,
                    sample_weight,
                ), loss_dtype()) + regularization
                return loss, (out, new_block_ntv)

            (loss, (h, new_block_ntv)), block_grads = backend.value_and_grad(
                block_loss, has_aux=True
            )(self.gather(tv, t_idx), h, self.gather(ntv, n_idx))
            grads = self.scatter(grads, t_idx, block_grads)
            ntv = self.scatter(ntv, n_idx, new_block_ntv)
            total = total + ops.cast(loss, loss_dtype())
            logs[f"block_{i}_loss"] = loss
            h = after(h, block_grads)

        loss, block_grads, y_pred, t_idx, ntv = self._output_block_grads(
            tv, ntv, h, y, sample_weight
        )
        grads = self.scatter(grads, t_idx, block_grads)
        total = total + ops.cast(loss, loss_dtype())
        logs[f"block_{len(self.blocks) - 1}_loss"] = loss
        return grads, ntv, total, y_pred, logs

    # ------------------------------------------------------------------ #
    # Input checks.
    # ------------------------------------------------------------------ #
    def validate_data(self, x, y=None, sample_weight=None):
        if isinstance(x, (list, tuple, dict)):
            raise ValueError(
                f"{type(self).__name__} takes a single input array. "
                f"Received: x of type {type(x).__name__}."
            )
        x = np.asarray(x)
        check_finite(x, "x")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 2 and y.shape[-1] == self.num_classes:
                if len(y) != len(x):
                    raise ValueError(
                        "x and y have different lengths. Received: "
                        f"{len(x)} inputs and {len(y)} labels."
                    )
            else:
                check_integer_labels(y, self.num_classes, len(x))

    def validate_shapes(self, x, y=None):
        if y is not None:
            shape = tuple(y.shape)
            if len(shape) > 2 or (
                len(shape) == 2 and shape[-1] not in (1, self.num_classes)
            ):
                raise ValueError(
                    "Expected integer labels (batch,) or one-hot labels "
                    f"(batch, {self.num_classes}). Received: labels of "
                    f"shape {shape}."
                )

    # ------------------------------------------------------------------ #
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "rule": self.rule,
                "local_loss": self.local_loss,
                "conv_targets": self.conv_targets,
                "conv_target_grid": self.conv_target_grid,
                "recurrent_targets": self.recurrent_targets,
                "projection_shapes": self.projection_shapes,
                "projection_initializer": keras.initializers.serialize(
                    self.projection_initializer
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["projection_initializer"] = keras.initializers.deserialize(
            config["projection_initializer"]
        )
        return super().from_config(config, custom_objects)




def stateless_block_call(block, params, block_ntv, inputs, training=True,
                         return_losses=False):
    """`block.stateless_call`, passing `training` only to layers whose
    `call` takes it. With `return_losses`, also the sum (in `loss_dtype()`)
    of the losses the call adds (regularisers at `params`)."""
    kwargs = {}
    if getattr(block, "_call_has_training_arg", True):
        kwargs["training"] = training
    if not return_losses:
        return block.stateless_call(params, block_ntv, inputs, **kwargs)
    out, new_block_ntv, losses = block.stateless_call(
        params, block_ntv, inputs, return_losses=True, **kwargs
    )
    return out, new_block_ntv, sum_losses(losses)
