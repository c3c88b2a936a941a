import numpy as np
from keras import ops

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.models.argument_checks import check_blocks
from keras_local.models.argument_checks import check_num_classes
from keras_local.models.classifier_input_checks import ClassifierInputChecks
from keras_local.models.local_model import LocalModel
from keras_local.models.local_model import call_with_losses
from keras_local.rules import single_forward as sf
from keras_local.rules.precision import loss_dtype

RULES = ("sf", "sf_topdown")


@keras_local_export
class SingleForwardModel(ClassifierInputChecks, LocalModel):
    """Single-forward learning (no negative data), plain or top-down.

    The "SF" rule of Park et al. (ICLR 2024) in its plain-network form. The
    model holds one fixed random input per class (the graph version's
    "virtual nodes"). Every block maps the batch and the class inputs through
    the same weights (each input row-normalised by its L2 norm, as in the
    reference); its local loss is the cross-entropy of the softmax, over the
    classes, of the dot-product similarities between each sample's activity
    and each class's activity, divided by `temperature`. No negative data
    are generated, and no gradient crosses a block boundary.

    With `rule="sf_topdown"` (the reference's "top-to-input" SF) block `j`
    receives `[norm(state_j), norm(state_{j+2})]`: the activity of the block
    below and the activity of the block *above* from the previous step
    (detached). At each train step the states are recomputed from the
    weights of the previous step (a bottom-up pass with zero top-down input,
    then `time_steps - 1` settling iterations), and one learning iteration
    updates the even blocks first and then the odd blocks, which already
    see the even blocks' new activities (`alternating=True`, as the
    reference). The state above the top block is a label row: the uniform
    `1 / num_classes` for samples (train and test alike, so the true label
    never leaks into the input) and the class's one-hot for the class rows.

    `predict(x)` returns per-class scores: the sum over blocks of each
    block's class probabilities (for top-down, those of the last iteration).
    Compile with `metrics=["accuracy"]`. Training logs `loss` (the sum of
    the block losses) and `block_{i}_loss`; `evaluate` reports the same sum.

    Args:
        blocks: list of Keras layers trained bottom-up (`Dense` blocks for
            vectors; for `rule="sf"` also `Conv2D` blocks for images). With
            `"sf_topdown"` every block must map vectors to vectors.
        num_classes: int, number of classes.
        rule: `"sf"` or `"sf_topdown"`. Defaults to `"sf"`.
        temperature: float > 0, divides the similarities. Defaults to `1.0`.
        learn_class_embeddings: bool, train the class inputs with the first
            block's loss (the reference keeps them fixed). Defaults to
            `False`.
        time_steps: int >= 1, iterations of the top-down dynamics per step
            and at prediction (`"sf_topdown"` only). Defaults to `1`.
        alternating: bool, update even then odd blocks (`"sf_topdown"`).
            Defaults to `True`.
        class_embedding_seed: int, seed of the fixed class inputs. Defaults
            to `0`.
        seed: int or `None`. Defaults to `None`.

    Returns:
        A `keras.Model` whose `predict` gives `(batch, num_classes)` scores.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = keras_local.datasets.load_mnist()
    x_train = x_train.reshape(-1, 784).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 784).astype("float32") / 255.0
    model = keras_local.SingleForwardModel(
        blocks=[keras.layers.Dense(500, activation="relu"),
                keras.layers.Dense(500, activation="relu")],
        num_classes=10, rule="sf_topdown", temperature=0.5,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=100, epochs=1)
    model.evaluate(x_test, y_test)
    ```

    References:
        - Park, Lee, Shin, "Forward Learning of Graph Neural Networks",
          ICLR 2024 (facebookresearch/forwardgnn, `gnn_sf.py`,
          `gnn_top2input_sf.py`).
    """

    serialized_arguments = ("blocks",)

    adds_regularization_losses = True

    def __init__(
        self,
        blocks,
        num_classes,
        rule="sf",
        temperature=1.0,
        learn_class_embeddings=False,
        time_steps=1,
        alternating=True,
        class_embedding_seed=0,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        blocks = check_blocks(blocks)
        check_num_classes(num_classes)
        if rule not in RULES:
            raise ValueError(
                f"Unknown `rule`. Expected one of {RULES}. Received: "
                f"rule={rule!r}"
            )
        if not float(temperature) > 0:
            raise ValueError(
                "`temperature` must be > 0. Received: "
                f"temperature={temperature!r}"
            )
        if not isinstance(time_steps, (int, np.integer)) or time_steps < 1:
            raise ValueError(
                "`time_steps` must be an int >= 1. Received: "
                f"time_steps={time_steps!r}"
            )
        self.blocks = blocks
        self.num_classes = int(num_classes)
        self.rule = rule
        self.temperature = float(temperature)
        self.learn_class_embeddings = bool(learn_class_embeddings)
        self.time_steps = int(time_steps)
        self.alternating = bool(alternating)
        self.class_embedding_seed = int(class_embedding_seed)
        self._units = []

    # ------------------------------------------------------------------ #
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_input_rank(input_shape)
        feature_shape = tuple(input_shape[1:])
        self.class_embeddings = self.add_weight(
            shape=(self.num_classes,) + feature_shape,
            initializer="zeros",
            trainable=self.learn_class_embeddings,
            name="class_embeddings",
        )
        self.class_embeddings.assign(
            sf.initial_class_embeddings(
                self.num_classes, feature_shape, self.class_embedding_seed
            )
        )
        if self.rule == "sf":
            shape = (None,) + feature_shape
            for block in self.blocks:
                if not block.built:
                    block.build(shape)
                shape = tuple(block.compute_output_shape(shape))
        else:
            # Output widths first (a Dense block's width does not depend on
            # its input width), then each block on [below, above].
            units = []
            width = feature_shape[-1]
            for block in self.blocks:
                out = tuple(block.compute_output_shape((None, width + 1)))
                if len(out) != 2:
                    raise ValueError(
                        "rule='sf_topdown' needs blocks that map vectors to "
                        f"vectors. Received: block {block.name} with output "
                        f"shape {out}."
                    )
                units.append(int(out[-1]))
                width = units[-1]
            self._units = units
            below = feature_shape[-1]
            for j, block in enumerate(self.blocks):
                above = units[j + 1] if j + 1 < len(units) else self.num_classes
                if not block.built:
                    block.build((None, below + above))
                below = units[j]
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    # ------------------------------------------------------------------ #
    # Passes over rows = [samples; class inputs].
    # ------------------------------------------------------------------ #
    def _rows(self, x, class_embeddings):
        return ops.concatenate(
            [x, ops.cast(class_embeddings, x.dtype)], axis=0
        )

    def _top_rows(self, batch, dtype):
        k = self.num_classes
        uniform = ops.full((batch, k), 1.0 / k, dtype=dtype)
        return ops.concatenate([uniform, ops.eye(k, dtype=dtype)], axis=0)

    def _bottom_up(self, run_block, rows):
        """States `[rows, h_1, ..., h_L]` of one bottom-up pass with zero
        top-down input (the reference's initialisation)."""
        states = [rows]
        h = rows
        for j, block in enumerate(self.blocks):
            above = self._units[j + 1] if j + 1 < len(self.blocks) else self.num_classes
            zeros = ops.zeros((ops.shape(h)[0], above), dtype=h.dtype)
            h = run_block(block, sf.topdown_input(h, zeros))
            states.append(h)
        return states

    def _iterate(self, run_block, states):
        """One iteration of the top-down dynamics, no learning."""
        new = [None] * len(states)
        new[0] = states[0]
        for group in sf.alternating_groups(len(self.blocks), self.alternating):
            for j in group:
                below, above = self._neighbours(states, new, j)
                new[j + 1] = run_block(self.blocks[j], sf.topdown_input(below, above))
        new[-1] = states[-1]
        return new

    def _neighbours(self, states, new, j):
        below = new[j] if (self.alternating and new[j] is not None) else states[j]
        above = new[j + 2] if (self.alternating and new[j + 2] is not None) else states[j + 2]
        return below, above

    def _topdown_states(self, run_block, x, class_embeddings):
        batch = ops.shape(x)[0]
        rows = self._rows(x, class_embeddings)
        states = self._bottom_up(run_block, rows)
        states.append(self._top_rows(batch, rows.dtype))
        for _ in range(self.time_steps - 1):
            states = self._iterate(run_block, states)
        return [backend.stop_gradient(s) for s in states]

    def _probabilities(self, activities, batch):
        total = 0.0
        for h in activities:
            total = total + ops.cast(
                sf.class_probabilities(h[:batch], h[batch:], self.temperature),
                loss_dtype(),
            )
        return total

    def call(self, x, training=False):
        def run_block(block, h):
            return block(h, training=training)

        return self._scores(run_block, x, self.class_embeddings)

    def _scores(self, run_block, x, class_embeddings):
        batch = ops.shape(x)[0]
        if self.rule == "sf":
            h = self._rows(x, class_embeddings)
            activities = []
            for block in self.blocks:
                h = run_block(block, sf.row_normalize(h))
                activities.append(h)
            return self._probabilities(activities, batch)
        states = self._topdown_states(run_block, x, class_embeddings)
        states = self._iterate(run_block, states)
        return self._probabilities(states[1:-1], batch)

    def _stateless_runner(self, tv, ntv, training=False):
        def run_block(block, h):
            return self.layer_call(block, tv, ntv, h, training=training)[0]

        return run_block

    def topdown_states(self, trainable_values, non_trainable_values, x):
        """The detached states `[rows, h_1, ..., h_L, label rows]` a train
        step starts from (`"sf_topdown"`): computed with the given weights,
        i.e. the previous step's. Rows are the batch then the classes."""
        tv, ntv = trainable_values, non_trainable_values
        emb = self._class_embedding_value(tv, ntv)
        return self._topdown_states(
            self._stateless_runner(tv, ntv, training=False),
            ops.convert_to_tensor(x), emb,
        )

    def _class_embedding_value(self, tv, ntv):
        pool = tv if self.class_embeddings.trainable else ntv
        return pool[self.variable_position(self.class_embeddings)]

    # ------------------------------------------------------------------ #
    # The rule.
    # ------------------------------------------------------------------ #
    def gradient_groups(self):
        groups = [[block] for block in self.blocks]
        if self.learn_class_embeddings:  # learned by block 0's loss
            groups[0].append(self.class_embeddings)
        return groups

    def local_log_names(self):
        return [f"block_{i}_loss" for i in range(len(self.blocks))]

    def _block_step(self, j, tv, ntv, make_input, y, sample_weight, batch):
        """Loss and gradient of block `j` on `make_input(extra)` where
        `extra` holds the class embeddings when they are learned by block 0."""
        block = self.blocks[j]
        t_idx = self.variable_indices(block, trainable=True)
        n_idx = self.variable_indices(block, trainable=False)
        learn_emb = j == 0 and self.learn_class_embeddings
        if learn_emb:
            t_idx = t_idx + [self.variable_position(self.class_embeddings)]
        params = self.gather(tv, t_idx)
        n_block = len(block.trainable_variables)

        def block_loss(params, block_ntv):
            extra = params[n_block] if learn_emb else None
            out, new_block_ntv, regularization = call_with_losses(
                block, params[:n_block], block_ntv, make_input(extra)
            )
            # (The block may compute in another dtype than the model.)
            loss = ops.cast(sf.single_forward_loss(
                out[:batch], out[batch:], y, self.temperature, sample_weight,
                self.num_classes,
            ), loss_dtype()) + regularization
            return loss, (out, new_block_ntv)

        (loss, (out, block_ntv)), grads = backend.value_and_grad(
            block_loss, has_aux=True
        )(params, self.gather(ntv, n_idx))
        ntv = self.scatter(ntv, n_idx, block_ntv)
        return loss, backend.stop_gradient(out), t_idx, grads, ntv

    def local_grads(
        self, trainable_values, non_trainable_values, x, y, sample_weight
    ):
        tv, ntv = list(trainable_values), list(non_trainable_values)
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        x = ops.convert_to_tensor(x)
        batch = ops.shape(x)[0]
        emb = self._class_embedding_value(tv, ntv)
        grads = [ops.zeros_like(v) for v in tv]
        losses = [None] * len(self.blocks)
        activities = [None] * len(self.blocks)

        if self.rule == "sf":
            h = self._rows(x, emb)
            for j in range(len(self.blocks)):
                if j == 0:
                    def make_input(extra, h=h):
                        rows = h if extra is None else self._rows(x, extra)
                        return sf.row_normalize(rows)
                else:
                    def make_input(extra, h=h):
                        return sf.row_normalize(h)
                loss, h, idx, block_grads, ntv = self._block_step(
                    j, tv, ntv, make_input, y, sample_weight, batch
                )
                grads = self.scatter(grads, idx, block_grads)
                losses[j], activities[j] = loss, h
        else:
            states = self._topdown_states(
                self._stateless_runner(tv, ntv, training=False), x, emb
            )
            new = [None] * len(states)
            new[0] = states[0]
            for group in sf.alternating_groups(len(self.blocks), self.alternating):
                for j in group:
                    below, above = self._neighbours(states, new, j)

                    def make_input(extra, below=below, above=above, j=j):
                        if extra is not None and j == 0:
                            below = self._rows(x, extra)
                        return sf.topdown_input(below, above)

                    loss, out, idx, block_grads, ntv = self._block_step(
                        j, tv, ntv, make_input, y, sample_weight, batch
                    )
                    grads = self.scatter(grads, idx, block_grads)
                    new[j + 1] = out
                    losses[j], activities[j] = loss, out

        logs = {f"block_{j}_loss": loss for j, loss in enumerate(losses)}
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        for loss in losses:
            total = total + ops.cast(loss, loss_dtype())
        y_pred = self._probabilities(activities, batch)
        return grads, ntv, total, y_pred, logs

    def evaluation_loss(self, tv, ntv, x, y, y_pred, sample_weight):
        """The summed block SF losses (for top-down, of the last iteration)."""
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        x = ops.convert_to_tensor(x)
        batch = ops.shape(x)[0]
        run_block = self._stateless_runner(tv, ntv)
        emb = self._class_embedding_value(tv, ntv)
        if self.rule == "sf":
            h = self._rows(x, emb)
            activities = []
            for block in self.blocks:
                h = run_block(block, sf.row_normalize(h))
                activities.append(h)
        else:
            states = self._iterate(
                run_block, self._topdown_states(run_block, x, emb)
            )
            activities = states[1:-1]
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        for h in activities:
            total = total + ops.cast(
                sf.single_forward_loss(
                    h[:batch], h[batch:], y, self.temperature, sample_weight,
                    self.num_classes,
                ),
                loss_dtype(),
            )
        return total

    # ------------------------------------------------------------------ #
    # Input checks.
    # ------------------------------------------------------------------ #
    def _check_input_rank(self, shape):
        if self.rule == "sf_topdown" and len(shape) != 2:
            raise ValueError(
                "rule='sf_topdown' expects vectors (batch, features). "
                f"Received: x of shape {shape}. Flatten the inputs first."
            )
        if len(shape) < 2:
            raise ValueError(
                "SingleForwardModel expects batched inputs (batch, ...). "
                f"Received: x of shape {shape}."
            )

    # ------------------------------------------------------------------ #
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "rule": self.rule,
                "temperature": self.temperature,
                "learn_class_embeddings": self.learn_class_embeddings,
                "time_steps": self.time_steps,
                "alternating": self.alternating,
                "class_embedding_seed": self.class_embedding_seed,
            }
        )
        return config
