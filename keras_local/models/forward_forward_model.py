import keras
import numpy as np
from keras import ops

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.models.argument_checks import check_blocks
from keras_local.models.argument_checks import check_num_classes
from keras_local.models.classifier_input_checks import ClassifierInputChecks
from keras_local.models.local_model import LocalModel
from keras_local.models.local_model import call_with_losses
from keras_local.rules import forward_forward as ff
from keras_local.rules.labels import check_choice
from keras_local.rules.ordering import after
from keras_local.rules.precision import loss_dtype

NEGATIVE_LABELS = ("random", "hard")
READOUTS = (None, "softmax")


@keras_local_export
class ForwardForwardModel(ClassifierInputChecks, LocalModel):
    """Forward-Forward training (Hinton 2022) of a stack of Keras blocks.

    Each block sees the length-normalised output of the block below (only
    its direction passes up) and learns only from its own loss: high
    goodness (mean squared activity) on positive data, the input with its
    true label embedded, and low goodness on negative data, the same input
    with a wrong label. No gradient crosses a block boundary: the train step
    forwards one block, takes its local gradient, and hands the detached
    output to the next block.

    With `goodness="channelwise"` (channel-wise competitive learning,
    Papachristodoulou et al. 2024) no label is embedded and no negative
    data are made: the last axis of each block (its channels, or the units
    of a dense block) is split into `num_classes` groups, each group's
    goodness is its class's score, and one pass per block gives the
    positive goodness (the true class's group) and the negative goodness
    (the other groups). Blocks may then hold `BatchNormalization`, which
    a goodness over separate positive and negative batches cannot use.

    `predict(x)` returns per-class scores: for each candidate label, the
    goodness accumulated over the blocks (one pass per class; one pass in
    all with channel-wise goodness), or, with `readout="softmax"`, the
    probabilities of a softmax layer trained locally on the normalised
    activities. Compile with `metrics=["accuracy"]` to get accuracy from
    `evaluate` and validation. Training logs `loss`, the sum of the block
    losses, and per block `block_{i}_loss`, `block_{i}_positive_goodness`
    and `block_{i}_negative_goodness` (epoch means); with random negatives
    no train-set accuracy is computed (it would cost one forward pass per
    class), with hard negatives or a readout it is. `evaluate` reports the
    summed block losses with the hardest wrong label as negative.

    Args:
        blocks: list of Keras layers (e.g. `Dense(500, activation="relu")`
            for vectors `(batch, features)`, or `Conv2D(...)` blocks for
            images `(batch, height, width, channels)`), trained bottom-up in
            order. Goodness and length normalisation run over all units of
            a block.
        num_classes: int, number of classes.
        threshold: float, the goodness threshold theta, or `"width"`:
            goodness is then the sum of squares and theta the number of
            units of each block (of each class group, with channel-wise
            goodness), as in common re-implementations. Defaults to `2.0`.
        loss: `"softplus"` (softplus(theta - g_pos) + softplus(g_neg -
            theta)), `"symba"` (softplus(-alpha (g_pos - g_neg))) or, with
            channel-wise goodness only, `"competitive"` (the CwC loss:
            cross-entropy of the softmax over the class goodness). Defaults
            to `"softplus"`.
        alpha: float, the SymBa scale. Defaults to `4.0`.
        normalization: `"rms"` (x / sqrt(mean(x^2)), width-independent),
            `"l2"` (x / ||x||, as in the common PyTorch reference) or
            `"none"`. Defaults to `"rms"`.
        goodness: `"block"` (one goodness over all units of a block, the
            label embedded in the input) or `"channelwise"` (one goodness
            per class from groups of the block's last axis, which must be a
            multiple of `num_classes`; no label embedding, no negative
            data). Defaults to `"block"`.
        label_embedding: `"overlay"` (one-hot written over the first
            `num_classes` features, as in the paper; for images over the
            first `num_classes` pixels, every channel) or `"append"` (extra
            features; for images, `num_classes` constant one-hot channels).
            Must be left `None` with channel-wise goodness. Defaults to
            `None`: `"overlay"` with block goodness.
        label_scale: float, value written for the label. Defaults to `1.0`.
        negative_labels: `"random"` (a uniformly drawn wrong label, drawn
            inside the step from the seed) or `"hard"` (the most-confused
            wrong label under the current weights). Must be left `None` with
            channel-wise goodness. Defaults to `None`: `"random"` with
            block goodness.
        skip_first_block: bool, leave the first block's goodness out of the
            prediction (the paper's choice for deep nets). Defaults to
            `False`.
        scored_blocks: int or `None`, predict from the last
            `scored_blocks` blocks only (`1`: the top block alone, the CwC
            paper's predictor). Cannot be combined with `skip_first_block`.
            Defaults to `None` (every block, see `skip_first_block`).
        readout: `None` or `"softmax"`: a softmax layer on the normalised
            activities of a neutral-label pass, trained locally with
            cross-entropy. Defaults to `None`.
        peer_normalization: float, the coefficient of peer normalisation:
            a running mean of each unit's positive-pass activity is pushed
            toward the layer mean (Hinton 2022 sec. 3.5; 0.03 in the
            references). `0` disables it. Defaults to `0.0`.
        peer_momentum: float, momentum of that running mean. Defaults to
            `0.9`.
        seed: int or `None`, seeds the negative labels. Defaults to `None`.

    Returns:
        A `keras.Model` whose `predict` gives `(batch, num_classes)` scores.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = keras_local.datasets.load_mnist()
    x_train = x_train.reshape(-1, 784).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 784).astype("float32") / 255.0
    model = keras_local.ForwardForwardModel(
        blocks=[keras.layers.Dense(500, activation="relu"),
                keras.layers.Dense(500, activation="relu")],
        num_classes=10,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=100, epochs=1,
              validation_data=(x_test, y_test))
    ```

    References:
        - Hinton, "The Forward-Forward Algorithm: Some Preliminary
          Investigations", 2022.
        - Lee & Song, "SymBa: A Symmetric Loss for the Forward-Forward
          Algorithm", 2023.
        - Papachristodoulou, Kyrkou, Timotheou, Theocharides, "Convolutional
          Channel-wise Competitive Learning for the Forward-Forward
          Algorithm", AAAI 2024.
    """

    serialized_arguments = ("blocks",)

    adds_regularization_losses = True

    def __init__(
        self,
        blocks,
        num_classes,
        threshold=2.0,
        loss="softplus",
        alpha=4.0,
        normalization="rms",
        goodness="block",
        label_embedding=None,
        label_scale=1.0,
        negative_labels=None,
        skip_first_block=False,
        scored_blocks=None,
        readout=None,
        peer_normalization=0.0,
        peer_momentum=0.9,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        blocks = check_blocks(blocks)
        check_num_classes(num_classes)
        check_choice("goodness", goodness, ff.GOODNESS_TYPES)
        if goodness == "channelwise":
            check_choice("loss", loss, ff.CHANNELWISE_LOSSES)
            for name, value in (("label_embedding", label_embedding),
                                ("negative_labels", negative_labels)):
                if value is not None:
                    raise ValueError(
                        "With goodness='channelwise' the classes are read from "
                        "channel groups of one pass: no label is embedded and "
                        f"no negative data are made, so `{name}` must be left "
                        f"None. Received: {name}={value!r}"
                    )
        else:
            check_choice("loss", loss, ff.LOSSES)
            label_embedding = "overlay" if label_embedding is None else label_embedding
            negative_labels = "random" if negative_labels is None else negative_labels
            check_choice("label_embedding", label_embedding, ff.LABEL_EMBEDDINGS)
            check_choice("negative_labels", negative_labels, NEGATIVE_LABELS)
        check_choice("normalization", normalization, ff.NORMALIZATIONS)
        check_choice("readout", readout, READOUTS)
        self.blocks = blocks
        self.num_classes = int(num_classes)
        if isinstance(threshold, str) and threshold != "width":
            raise ValueError(
                "`threshold` must be a float or 'width'. Received: "
                f"threshold={threshold!r}"
            )
        self.threshold = threshold if threshold == "width" else float(threshold)
        self.loss_type = loss
        self.alpha = float(alpha)
        self.normalization = normalization
        self.goodness = goodness
        self.label_embedding = label_embedding
        self.label_scale = float(label_scale)
        self.negative_labels = negative_labels
        self.skip_first_block = bool(skip_first_block)
        if scored_blocks is not None:
            if (not isinstance(scored_blocks, (int, np.integer)) or isinstance(scored_blocks, bool)
                    or not 1 <= scored_blocks <= len(blocks) or skip_first_block):
                raise ValueError(
                    "`scored_blocks` must be None or an int between 1 and the "
                    f"number of blocks ({len(blocks)}), and cannot be combined "
                    "with skip_first_block=True. Received: "
                    f"scored_blocks={scored_blocks!r}, skip_first_block={skip_first_block!r}"
                )
            scored_blocks = int(scored_blocks)
        self.scored_blocks = scored_blocks
        self.readout = readout
        if not 0.0 <= float(peer_momentum) < 1.0 or float(peer_normalization) < 0:
            raise ValueError(
                "Expected peer_normalization >= 0 and 0 <= peer_momentum < 1. "
                f"Received: peer_normalization={peer_normalization!r}, "
                f"peer_momentum={peer_momentum!r}"
            )
        self.peer_normalization = float(peer_normalization)
        self.peer_momentum = float(peer_momentum)
        self.running_means = []
        self._thresholds = []
        self.readout_layer = (
            keras.layers.Dense(num_classes, name="readout")
            if readout == "softmax"
            else None
        )

    # ------------------------------------------------------------------ #
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_input_rank(input_shape)
        if self.label_embedding == "overlay":
            slots = int(np.prod(input_shape[1:-1])) if len(input_shape) == 4 else input_shape[-1]
            if slots is not None and slots < self.num_classes:
                raise ValueError(
                    f"The label overlay writes {self.num_classes} "
                    f"{'pixels' if len(input_shape) == 4 else 'features'}, "
                    f"but inputs have only {slots}. Received: input shape "
                    f"{input_shape}, num_classes={self.num_classes}. Use "
                    "`label_embedding='append'` for small inputs."
                )
        shape = self._embedded_shape(input_shape)
        features = 0
        self._thresholds = []
        for i, block in enumerate(self.blocks):
            if not block.built:
                block.build(shape)
            shape = tuple(block.compute_output_shape(shape))
            width = int(np.prod(shape[1:]))
            if self.channelwise:
                if shape[-1] is None or shape[-1] % self.num_classes:
                    raise ValueError(
                        "Channel-wise goodness splits the last axis of every "
                        f"block into num_classes={self.num_classes} equal "
                        f"groups. Received: block {i} ({block.name}) with "
                        f"output shape {shape}. Give it a multiple of "
                        f"{self.num_classes} channels or units."
                    )
                group_width = float(width // self.num_classes)
                self._thresholds.append(group_width if self.threshold == "width" else self.threshold)
            else:
                self._thresholds.append(float(width) if self.threshold == "width" else self.threshold)
            if self.peer_normalization and len(self.running_means) < len(self.blocks):
                self.running_means.append(
                    self.add_weight(
                        shape=(shape[-1],), initializer="zeros", trainable=False,
                        name=f"block_{i}_running_mean",
                    )
                )
            if i >= self._first_scored_block():
                features += width
        if self.readout_layer is not None and not self.readout_layer.built:
            self.readout_layer.build((None, features))
        self.built = True

    @property
    def channelwise(self):
        return self.goodness == "channelwise"

    def _embedded_shape(self, input_shape):
        shape = (None,) + tuple(input_shape[1:])
        if self.label_embedding == "append":
            return shape[:-1] + (shape[-1] + self.num_classes,)
        return shape

    def _goodness(self, activity):
        # threshold="width" follows the re-implementations: sum of squares
        # against theta = the number of units.
        return ff.goodness(activity, "sum" if self.threshold == "width" else "mean")

    def _class_goodness(self, activity):
        return ff.channelwise_goodness(
            activity, self.num_classes, "sum" if self.threshold == "width" else "mean"
        )

    def _first_scored_block(self):
        if self.scored_blocks is not None:
            return len(self.blocks) - self.scored_blocks
        return 1 if self.skip_first_block and len(self.blocks) > 1 else 0

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    # ------------------------------------------------------------------ #
    # Forward passes, written once over a `run_block(block, inputs)`.
    # ------------------------------------------------------------------ #
    def _embed(self, x, labels):
        if self.channelwise:
            return x
        return ff.embed_label(
            x, labels, self.num_classes, self.label_embedding, self.label_scale
        )

    def _goodness_scores(self, x, run_block):
        if self.channelwise:
            return self._channelwise_scores(x, run_block)
        batch = ops.shape(x)[0]
        k = self.num_classes
        tiled = ops.reshape(
            ops.repeat(ops.expand_dims(x, 1), k, axis=1), (-1,) + tuple(x.shape[1:])
        )
        labels = ops.tile(ops.arange(k, dtype="int32"), (batch,))
        h = self._embed(tiled, labels)
        total = ops.zeros((batch * k,), dtype=loss_dtype())
        for i, block in enumerate(self.blocks):
            h = run_block(block, ff.normalize_length(h, self.normalization))
            if i >= self._first_scored_block():
                total = total + ops.cast(self._goodness(h), loss_dtype())
        return ops.reshape(total, (batch, k))

    def _channelwise_scores(self, x, run_block):
        h, total = x, 0.0
        for i, block in enumerate(self.blocks):
            h = run_block(block, ff.normalize_length(h, self.normalization))
            if i >= self._first_scored_block():
                total = total + ops.cast(self._class_goodness(h), loss_dtype())
        return total

    def _readout_features(self, x, run_block):
        neutral = ops.full(
            (ops.shape(x)[0], self.num_classes), 1.0 / self.num_classes,
            dtype=x.dtype,
        )
        h = self._embed(x, neutral)
        features = []
        for i, block in enumerate(self.blocks):
            h = run_block(block, ff.normalize_length(h, self.normalization))
            if i >= self._first_scored_block():
                flat = ops.reshape(h, (ops.shape(h)[0], -1))
                features.append(ff.normalize_length(flat, self.normalization))
        return ops.concatenate(features, axis=-1)

    def call(self, x, training=False):
        def run_block(block, h):
            return block(h, training=training)

        if self.readout_layer is not None:
            features = self._readout_features(x, run_block)
            return ops.softmax(self.readout_layer(features), axis=-1)
        return self._goodness_scores(x, run_block)

    def _stateless_runner(self, tv, ntv, training=False):
        def run_block(block, h):
            return self.layer_call(block, tv, ntv, h, training=training)[0]

        return run_block

    # ------------------------------------------------------------------ #
    # The rule.
    # ------------------------------------------------------------------ #
    def gradient_groups(self):
        # Each block learns from its own loss (the read-out from its own).
        return list(self.blocks)

    def local_log_names(self):
        names = []
        for i in range(len(self.blocks)):
            names += [
                f"block_{i}_loss",
                f"block_{i}_positive_goodness",
                f"block_{i}_negative_goodness",
            ]
        if self.readout_layer is not None:
            names.append("readout_loss")
        return names

    def negative_labels_for(self, tv, ntv, x, y):
        """The wrong labels of the negative pass (detached)."""
        if self.negative_labels == "hard":
            scores = self._goodness_scores(
                x, self._stateless_runner(tv, ntv, training=False)
            )
            scores = backend.stop_gradient(scores)
            return ff.hardest_wrong_labels(scores, y), scores
        seed = self.step_seed(ntv)
        return ff.random_wrong_labels(y, self.num_classes, seed), None

    def local_grads(
        self, trainable_values, non_trainable_values, x, y, sample_weight
    ):
        tv, ntv = trainable_values, non_trainable_values
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        x = ops.convert_to_tensor(x)
        if self.channelwise:
            return self._channelwise_grads(tv, ntv, x, y, sample_weight)
        negatives, scores = self.negative_labels_for(tv, ntv, x, y)
        h_pos, h_neg = self._embed(x, y), self._embed(x, negatives)
        grads = [ops.zeros_like(v) for v in tv]
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        logs = {}
        for i, block in enumerate(self.blocks):
            t_idx = self.variable_indices(block, trainable=True)
            n_idx = self.variable_indices(block, trainable=False)
            params, block_ntv = self.gather(tv, t_idx), self.gather(ntv, n_idx)
            step = self._separable_block_step if self.loss_type == "softplus" else self._joint_block_step
            peer = None
            if self.peer_normalization:
                peer_idx = [self.variable_position(self.running_means[i])]
                peer = ntv[peer_idx[0]]
            loss, h_pos, h_neg, block_ntv, block_grads, g_pos, g_neg, peer = step(
                block, params, block_ntv,
                ff.normalize_length(h_pos, self.normalization),
                ff.normalize_length(h_neg, self.normalization),
                sample_weight, self._thresholds[i], peer,
            )
            grads = self.scatter(grads, t_idx, block_grads)
            ntv = self.scatter(ntv, n_idx, block_ntv)
            # The next block runs after this block's gradients exist, so a
            # compiled step frees this block's activations first.
            h_pos, h_neg = after(h_pos, block_grads), after(h_neg, block_grads)
            if peer is not None:
                ntv = self.scatter(ntv, peer_idx, [peer])
            total = total + ops.cast(loss, loss_dtype())
            _log_block(logs, i, loss, g_pos, g_neg)
        grads, total, y_pred = self._add_readout(tv, ntv, x, y, sample_weight, grads, total, logs, scores)
        return grads, ntv, total, y_pred, logs

    def _channelwise_grads(self, tv, ntv, x, y, sample_weight):
        # One pass per block: the class groups of its output give the
        # positive and the negative goodness at once.
        grads = [ops.zeros_like(v) for v in tv]
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        scores = ops.zeros((ops.shape(x)[0], self.num_classes), dtype=x.dtype)
        logs, h = {}, x
        for i, block in enumerate(self.blocks):
            t_idx = self.variable_indices(block, trainable=True)
            n_idx = self.variable_indices(block, trainable=False)
            peer_idx = None
            peer = None
            if self.peer_normalization:
                peer_idx = [self.variable_position(self.running_means[i])]
                peer = ntv[peer_idx[0]]
            threshold = self._thresholds[i]

            def block_loss(params, inputs, block_ntv, running_mean, block=block, threshold=threshold):
                out, new_block_ntv, regularization = call_with_losses(
                    block, params, block_ntv, inputs
                )
                class_goodness = self._class_goodness(out)
                per_sample = ff.channelwise_loss(
                    class_goodness, y, threshold, self.loss_type, self.alpha
                )
                loss = _weighted_mean(per_sample, sample_weight) + regularization
                if running_mean is not None:
                    peer_loss, running_mean = ff.peer_normalization(out, running_mean, self.peer_momentum)
                    loss = loss + self.peer_normalization * ops.cast(peer_loss, loss_dtype())
                g_pos, g_neg = ff.split_class_goodness(class_goodness, y)
                return loss, (out, new_block_ntv, class_goodness, ops.mean(g_pos), ops.mean(g_neg), running_mean)

            (loss, (h, block_ntv, class_goodness, g_pos, g_neg, peer)), block_grads = backend.value_and_grad(
                block_loss, has_aux=True
            )(self.gather(tv, t_idx), ff.normalize_length(h, self.normalization),
              self.gather(ntv, n_idx), peer)
            grads = self.scatter(grads, t_idx, block_grads)
            ntv = self.scatter(ntv, n_idx, block_ntv)
            if peer is not None:
                ntv = self.scatter(ntv, peer_idx, [peer])
            # The next block waits for this block's gradients (see below).
            h = after(backend.stop_gradient(h), block_grads)
            if i >= self._first_scored_block():
                scores = scores + ops.cast(backend.stop_gradient(class_goodness), scores.dtype)
            total = total + ops.cast(loss, loss_dtype())
            _log_block(logs, i, loss, g_pos, g_neg)
        grads, total, y_pred = self._add_readout(tv, ntv, x, y, sample_weight, grads, total, logs, scores)
        return grads, ntv, total, y_pred, logs

    def _add_readout(self, tv, ntv, x, y, sample_weight, grads, total, logs, y_pred):
        """Adds the local read-out's gradients and loss, if there is one;
        its probabilities are then the step's prediction."""
        if self.readout_layer is None:
            return grads, total, y_pred
        readout_loss, readout_grads, y_pred = self._readout_grads(
            tv, ntv, x, y, sample_weight
        )
        grads = self.scatter(grads, self.variable_indices(self.readout_layer), readout_grads)
        logs["readout_loss"] = readout_loss
        return grads, total + readout_loss, y_pred

    def _separable_block_step(
        self, block, params, block_ntv, x_pos, x_neg, sample_weight, threshold, running_mean
    ):
        # softplus(theta - g_pos) + softplus(g_neg - theta) splits into a
        # positive and a negative term: two passes of `batch` rows each keep
        # half the activations of one pass over both.
        def term(params, inputs, block_ntv, running_mean, positive):
            out, new_block_ntv, regularization = call_with_losses(
                block, params, block_ntv, inputs
            )
            g = self._goodness(out)
            per_sample = ops.softplus(threshold - g) if positive else ops.softplus(g - threshold)
            # The weights' regularisers count once, with the positive pass.
            loss = _weighted_mean(per_sample, sample_weight) + (regularization if positive else 0.0)
            if positive and running_mean is not None:
                peer_loss, running_mean = ff.peer_normalization(out, running_mean, self.peer_momentum)
                loss = loss + self.peer_normalization * ops.cast(peer_loss, loss_dtype())
            return loss, (out, new_block_ntv, ops.mean(g), running_mean)

        value_and_grad = backend.value_and_grad(term, has_aux=True)
        (loss_pos, (h_pos, block_ntv, g_pos, running_mean)), grads_pos = value_and_grad(
            params, x_pos, block_ntv, running_mean, True
        )
        (loss_neg, (h_neg, block_ntv, g_neg, _)), grads_neg = value_and_grad(
            params, after(x_neg, grads_pos), block_ntv, None, False
        )
        grads = [a + b for a, b in zip(grads_pos, grads_neg)]
        return loss_pos + loss_neg, h_pos, h_neg, block_ntv, grads, g_pos, g_neg, running_mean

    def _joint_block_step(
        self, block, params, block_ntv, x_pos, x_neg, sample_weight, threshold, running_mean
    ):
        batch = ops.shape(x_pos)[0]

        def block_loss(params, inputs, block_ntv, running_mean):
            out, new_block_ntv, regularization = call_with_losses(
                block, params, block_ntv, inputs
            )
            g = self._goodness(out)
            g_pos, g_neg = g[:batch], g[batch:]
            per_sample = ff.forward_forward_loss(g_pos, g_neg, threshold, self.loss_type, self.alpha)
            loss = _weighted_mean(per_sample, sample_weight) + regularization
            if running_mean is not None:
                peer_loss, running_mean = ff.peer_normalization(out[:batch], running_mean, self.peer_momentum)
                loss = loss + self.peer_normalization * ops.cast(peer_loss, loss_dtype())
            aux = (out[:batch], out[batch:], new_block_ntv, ops.mean(g_pos), ops.mean(g_neg), running_mean)
            return loss, aux

        (loss, (h_pos, h_neg, block_ntv, g_pos, g_neg, running_mean)), grads = backend.value_and_grad(
            block_loss, has_aux=True
        )(params, ops.concatenate([x_pos, x_neg], axis=0), block_ntv, running_mean)
        return loss, h_pos, h_neg, block_ntv, grads, g_pos, g_neg, running_mean

    def _readout_grads(self, tv, ntv, x, y, sample_weight):
        features = backend.stop_gradient(
            self._readout_features(x, self._stateless_runner(tv, ntv))
        )
        idx = self.variable_indices(self.readout_layer)

        def readout_loss(params, features):
            logits, _ = self.readout_layer.stateless_call(params, [], features)
            per_sample = keras.losses.sparse_categorical_crossentropy(
                y, logits, from_logits=True
            )
            return _weighted_mean(per_sample, sample_weight), ops.softmax(logits)

        (loss, probabilities), grads = backend.value_and_grad(
            readout_loss, has_aux=True
        )(self.gather(tv, idx), features)
        return loss, grads, probabilities

    def evaluation_loss(self, tv, ntv, x, y, y_pred, sample_weight):
        """Summed block losses, the hardest wrong label as negative."""
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        x = ops.convert_to_tensor(x)
        if self.channelwise:
            return self._channelwise_evaluation_loss(tv, ntv, x, y, sample_weight)
        negatives = ff.hardest_wrong_labels(y_pred, y)
        run_block = self._stateless_runner(tv, ntv)
        h_pos, h_neg = self._embed(x, y), self._embed(x, negatives)
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        for block, threshold in zip(self.blocks, self._thresholds):
            h_pos = run_block(block, ff.normalize_length(h_pos, self.normalization))
            h_neg = run_block(block, ff.normalize_length(h_neg, self.normalization))
            per_sample = ff.forward_forward_loss(
                self._goodness(h_pos), self._goodness(h_neg), threshold,
                self.loss_type, self.alpha,
            )
            total = total + _weighted_mean(per_sample, sample_weight)
        return total

    def _channelwise_evaluation_loss(self, tv, ntv, x, y, sample_weight):
        run_block = self._stateless_runner(tv, ntv)
        h, total = x, ops.convert_to_tensor(0.0, dtype=loss_dtype())
        for block, threshold in zip(self.blocks, self._thresholds):
            h = run_block(block, ff.normalize_length(h, self.normalization))
            per_sample = ff.channelwise_loss(
                self._class_goodness(h), y, threshold, self.loss_type, self.alpha
            )
            total = total + _weighted_mean(per_sample, sample_weight)
        return total

    # ------------------------------------------------------------------ #
    # Input checks.
    # ------------------------------------------------------------------ #
    def _check_input_rank(self, shape):
        if len(shape) not in (2, 4):
            raise ValueError(
                "ForwardForwardModel expects vectors (batch, features) for "
                "dense blocks or images (batch, height, width, channels) for "
                f"convolutional blocks. Received: x of shape {shape}. Flatten "
                "or add a channel axis first."
            )

    # ------------------------------------------------------------------ #
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "threshold": self.threshold,
                "loss": self.loss_type,
                "alpha": self.alpha,
                "normalization": self.normalization,
                "goodness": self.goodness,
                "label_embedding": self.label_embedding,
                "label_scale": self.label_scale,
                "negative_labels": self.negative_labels,
                "skip_first_block": self.skip_first_block,
                "scored_blocks": self.scored_blocks,
                "readout": self.readout,
                "peer_normalization": self.peer_normalization,
                "peer_momentum": self.peer_momentum,
            }
        )
        return config


def _log_block(logs, i, loss, g_pos, g_neg):
    logs[f"block_{i}_loss"] = loss
    logs[f"block_{i}_positive_goodness"] = g_pos
    logs[f"block_{i}_negative_goodness"] = g_neg


def _weighted_mean(per_sample, sample_weight):
    # In `loss_dtype()`: a block of another dtype than the model's (a
    # float64 layer, say) adds to the same sums.
    if sample_weight is not None:
        weight = ops.cast(ops.reshape(sample_weight, (-1,)), per_sample.dtype)
        per_sample = per_sample * weight
    return ops.cast(ops.mean(per_sample), loss_dtype())
