import warnings

import keras
import numpy as np
from keras import ops

from keras_local import backend
from keras_local.api_export import keras_local_export
from keras_local.layers.black_box import BlackBox
from keras_local.models.local_model import LocalModel
from keras_local.models.local_model import call_with_losses
from keras_local.models.local_model import check_finite
from keras_local.rules import forward_forward as ff
from keras_local.rules.labels import check_integer_labels
from keras_local.rules.precision import loss_dtype


@keras_local_export
class PhysicalForwardForwardModel(LocalModel):
    """Model-free Forward-Forward training of black-box physical layers.

    The network alternates black boxes (physical systems, only ever called
    forward) and trainable digital layers: `x -> box_0 -> digital_0 ->
    box_1 -> digital_1 -> ...`; each digital layer reads the (normalised)
    measurement of the box before it with the one-hot label appended. As in physical local learning
    (Momeni et al. 2023), each digital layer reads the measured output of
    the black box before it and is trained with its own Forward-Forward
    loss (high goodness for the input with its true label, low with a
    random wrong label) computed from that measurement, so no gradient and
    no model of any black box is ever needed: a train step is forward passes
    through the boxes plus local digital gradients. The boxes may be noisy
    and drift; training tracks them because every step measures them anew.

    `predict(x)` returns per-class goodness (one forward pass per class),
    or, with `readout="softmax"`, the probabilities of a linear softmax
    layer trained locally (cross-entropy, detached inputs) on the
    normalised digital activities of one pass with the neutral label
    `1 / num_classes`: one forward pass instead of one per class.
    Black boxes wrapping NumPy callables run through host callbacks: under
    `jax.jit` via `jax.pure_callback`; on TensorFlow via
    `tf.numpy_function`, which XLA cannot compile, so `compile` sets
    `jit_compile=False` there (with a warning if `True` was asked; boxes
    whose mode is still `"auto"` count as NumPy); on PyTorch `compile`
    always sets `jit_compile=False` (no `torch.compile` through a box). Logs
    `loss` and `block_{i}_loss`.

    Args:
        black_boxes: list of `BlackBox` layers (or callables, wrapped in
            `BlackBox`), one per block.
        digital_layers: list of trainable Keras layers, one after each box.
        num_classes: int.
        threshold: float, goodness threshold. Defaults to `2.0`.
        normalization: `"rms"`, `"l2"`, `"layer"` or `"none"`, applied to
            each digital output before it drives the next box. Defaults to
            `"rms"`.
        measurement_normalization: the same choices, applied to each box's
            measurement before the label is appended; `"layer"` (centre,
            then rms) removes the per-sample offset of intensity
            measurements. `None` means `normalization`. Defaults to `None`.
        label_scale: float, value of the one-hot label appended to each
            digital layer's input. Large values (e.g. `5.0`) let the layer
            gate its units on the label, which lowers the FF loss but makes
            the neutral-label activities that the softmax read-out reads
            less informative: on MNIST through the simulated box (10
            epochs, cosine-decayed rate), validation accuracy peaked at 96%
            and fell back to 95% with `5.0` (to 88% at a constant rate),
            and kept rising to 97% with `1.0`. Defaults to `1.0`.
        readout: `None` or `"softmax"` (see above). Defaults to `None`.
        seed: int or `None`, seeds the negative labels. Defaults to `None`.

    Returns:
        A `keras.Model` whose `predict` gives `(batch, num_classes)` scores.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = keras_local.datasets.load_mnist()
    x_train = x_train.reshape(-1, 784).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 784).astype("float32") / 255.0
    system = keras_local.layers.SimulatedPhysicalSystem(784, 1000, noise=0.02, drift=1e-4)
    model = keras_local.PhysicalForwardForwardModel(
        [keras_local.layers.BlackBox(system)], [keras.layers.Dense(500, activation="relu")],
        num_classes=10, measurement_normalization="layer", readout="softmax",
    )
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=100, epochs=1)
    model.evaluate(x_test, y_test)
    ```

    References:
        - Momeni, Rahmani, Mallejac, del Hougne, Fleury, "Backpropagation-free
          Training of Deep Physical Neural Networks", Science 2023.
        - Hinton, "The Forward-Forward Algorithm", 2022.
    """

    serialized_arguments = ("black_boxes", "digital_layers")

    adds_regularization_losses = True

    def __init__(self, black_boxes, digital_layers, num_classes, threshold=2.0,
                 normalization="rms", label_scale=1.0, seed=None,
                 measurement_normalization=None, readout=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(black_boxes, (list, tuple)) or not black_boxes:
            raise ValueError(
                "`black_boxes` must be a non-empty list. Received: "
                f"black_boxes={black_boxes!r}"
            )
        if not isinstance(digital_layers, (list, tuple)) or len(digital_layers) != len(black_boxes):
            raise ValueError(
                "`digital_layers` must be a list with one layer per black box. "
                f"Received: {len(black_boxes)} black boxes and "
                f"digital_layers={digital_layers!r}"
            )
        for layer in digital_layers:
            if not isinstance(layer, keras.layers.Layer):
                raise TypeError(
                    "Every digital layer must be a `keras.layers.Layer`. "
                    f"Received: {layer!r}"
                )
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(
                f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}"
            )
        for name, value in (("normalization", normalization),
                            ("measurement_normalization", measurement_normalization)):
            if value not in ff.MEASUREMENT_NORMALIZATIONS and not (
                name == "measurement_normalization" and value is None
            ):
                raise ValueError(
                    f"Unknown `{name}`. Expected one of "
                    f"{ff.MEASUREMENT_NORMALIZATIONS}. Received: {name}={value!r}"
                )
        if readout not in (None, "softmax"):
            raise ValueError(
                "`readout` must be None or 'softmax'. Received: "
                f"readout={readout!r}"
            )
        self.black_boxes = [
            b if isinstance(b, BlackBox) else BlackBox(b) for b in black_boxes
        ]
        self.digital_layers = list(digital_layers)
        self.num_classes = int(num_classes)
        self.threshold = float(threshold)
        self.normalization = normalization
        self.label_scale = float(label_scale)
        self.measurement_normalization = measurement_normalization
        self.readout = readout
        self.readout_layer = (
            keras.layers.Dense(self.num_classes, name="readout")
            if readout == "softmax" else None
        )

    def compile(self, *args, **kwargs):
        if backend.BACKEND == "tensorflow" and any(
            b.mode != "tensor" for b in self.black_boxes
        ):
            if kwargs.get("jit_compile") is True:
                warnings.warn(
                    "TensorFlow cannot XLA-compile a NumPy black box "
                    "(`tf.numpy_function`): compiling with jit_compile=False. "
                    "Use the JAX backend for a compiled step with NumPy boxes.",
                    stacklevel=2,
                )
            kwargs["jit_compile"] = False
        if backend.BACKEND == "torch":
            # torch.compile (dynamo) cannot trace host calls into the boxes.
            kwargs["jit_compile"] = False
        super().compile(*args, **kwargs)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_input(input_shape)
        shape = (None,) + input_shape[1:]
        features = 0
        for box, layer in zip(self.black_boxes, self.digital_layers):
            if not box.built:
                box.build(shape)
            shape = tuple(box.compute_output_shape(shape))
            shape = shape[:-1] + (shape[-1] + self.num_classes,)
            if not layer.built:
                layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
            features += int(np.prod(shape[1:]))
        if self.readout_layer is not None and not self.readout_layer.built:
            self.readout_layer.build((None, features))
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def _norm(self, h):
        return ff.normalize_length(h, self.normalization)

    def _digital_input(self, measured, labels):
        mode = self.measurement_normalization or self.normalization
        return ff.embed_label(
            ff.normalize_length(measured, mode), labels, self.num_classes,
            "append", self.label_scale,
        )

    def _readout_features(self, x, run_digital, first_measurement=None):
        """Normalised digital activities of one neutral-label pass (the
        first box's measurement may be given, to reuse one)."""
        labels = ops.full(
            (ops.shape(x)[0], self.num_classes), 1.0 / self.num_classes, dtype=x.dtype
        )
        h, features = None, []
        for i, (box, layer) in enumerate(zip(self.black_boxes, self.digital_layers)):
            if i == 0:
                measured = box(x) if first_measurement is None else first_measurement
            else:
                measured = box(self._norm(h))
            h = run_digital(layer, self._digital_input(measured, labels))
            features.append(self._norm(ops.reshape(h, (ops.shape(h)[0], -1))))
        return ops.concatenate(features, axis=-1)

    def _goodness_scores(self, x, run_digital):
        batch = ops.shape(x)[0]
        k = self.num_classes
        labels = ops.tile(ops.arange(k, dtype="int32"), (batch,))
        total = ops.zeros((batch * k,), dtype=x.dtype)
        h = None
        for i, (box, layer) in enumerate(zip(self.black_boxes, self.digital_layers)):
            if i == 0:
                measured = box(x)
                measured = ops.reshape(
                    ops.repeat(ops.expand_dims(measured, 1), k, axis=1),
                    (-1, measured.shape[-1]),
                )
            else:
                measured = box(self._norm(h))
            h = run_digital(layer, self._digital_input(measured, labels))
            total = total + ff.goodness(h)
        return ops.reshape(total, (batch, k))

    def call(self, x, training=False):
        def run_digital(layer, h):
            return layer(h, training=training)

        x = ops.convert_to_tensor(x)
        if self.readout_layer is not None:
            features = self._readout_features(x, run_digital)
            return ops.softmax(self.readout_layer(features), axis=-1)
        return self._goodness_scores(x, run_digital)

    def gradient_groups(self):
        return list(self.digital_layers)

    def local_log_names(self):
        names = [f"block_{i}_loss" for i in range(len(self.black_boxes))]
        return names + (["readout_loss"] if self.readout_layer is not None else [])

    def local_grads(self, trainable_values, non_trainable_values, x, y, sample_weight):
        tv, ntv = list(trainable_values), list(non_trainable_values)
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        x = ops.convert_to_tensor(x)
        batch = ops.shape(x)[0]
        negatives = ff.random_wrong_labels(y, self.num_classes, self.step_seed(ntv))
        labels = ops.concatenate([y, negatives], axis=0)
        h = None
        grads = [ops.zeros_like(v) for v in tv]
        total = ops.convert_to_tensor(0.0, dtype=loss_dtype())
        logs = {}
        for i, (box, layer) in enumerate(zip(self.black_boxes, self.digital_layers)):
            # Forward only: one measurement of the box for both passes.
            if i == 0:
                # x carries no label: one measurement serves both passes
                # (and the read-out).
                first_measurement = box(x)
                measured = ops.concatenate([first_measurement, first_measurement], axis=0)
            else:
                measured = box(self._norm(h))
            measured = self._digital_input(measured, labels)
            t_idx = self.variable_indices(layer, trainable=True)
            n_idx = self.variable_indices(layer, trainable=False)

            def block_loss(params, layer_ntv, measured=measured, layer=layer):
                out, new_ntv, regularization = call_with_losses(
                    layer, params, layer_ntv, measured
                )
                g = ff.goodness(out)
                per_sample = ff.forward_forward_loss(g[:batch], g[batch:], self.threshold)
                if sample_weight is not None:
                    per_sample = per_sample * ops.cast(
                        ops.reshape(sample_weight, (-1,)), per_sample.dtype
                    )
                return ops.mean(per_sample) + regularization, (out, new_ntv)

            (loss, (out, layer_ntv)), block_grads = backend.value_and_grad(
                block_loss, has_aux=True
            )(self.gather(tv, t_idx), self.gather(ntv, n_idx))
            grads = self.scatter(grads, t_idx, block_grads)
            ntv = self.scatter(ntv, n_idx, layer_ntv)
            h = backend.stop_gradient(out)
            total = total + ops.cast(loss, loss_dtype())
            logs[f"block_{i}_loss"] = loss
        y_pred = None
        if self.readout_layer is not None:
            readout_loss, readout_grads, y_pred = self._readout_grads(
                tv, ntv, x, y, sample_weight, first_measurement
            )
            grads = self.scatter(grads, self.variable_indices(self.readout_layer), readout_grads)
            total = total + readout_loss
            logs["readout_loss"] = readout_loss
        return grads, ntv, total, y_pred, logs

    def _readout_grads(self, tv, ntv, x, y, sample_weight, first_measurement):
        def run_digital(layer, h):
            return self.layer_call(layer, tv, ntv, h, training=False)[0]

        features = backend.stop_gradient(
            self._readout_features(x, run_digital, first_measurement)
        )
        idx = self.variable_indices(self.readout_layer)

        def readout_loss(params, features):
            logits, _ = self.readout_layer.stateless_call(params, [], features)
            per_sample = keras.losses.sparse_categorical_crossentropy(
                y, logits, from_logits=True
            )
            if sample_weight is not None:
                per_sample = per_sample * ops.cast(
                    ops.reshape(sample_weight, (-1,)), per_sample.dtype
                )
            return ops.mean(per_sample), ops.softmax(logits)

        (loss, probabilities), grads = backend.value_and_grad(
            readout_loss, has_aux=True
        )(self.gather(tv, idx), features)
        return ops.cast(loss, loss_dtype()), grads, probabilities

    def evaluation_loss(self, tv, ntv, x, y, y_pred, sample_weight):
        """Cross-entropy of the softmax of the per-class goodness (or of
        the read-out's probabilities)."""
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        if self.readout_layer is not None:
            log_p = ops.log(ops.clip(y_pred, 1e-7, 1.0))
        else:
            log_p = ops.log_softmax(y_pred, axis=-1)
        per_sample = -ops.sum(ops.one_hot(y, self.num_classes, dtype=log_p.dtype) * log_p, axis=-1)
        if sample_weight is not None:
            per_sample = per_sample * ops.cast(ops.reshape(sample_weight, (-1,)), per_sample.dtype)
        return ops.mean(per_sample)

    def validate_data(self, x, y=None, sample_weight=None):
        if isinstance(x, (list, tuple, dict)):
            raise ValueError(
                "PhysicalForwardForwardModel takes a single input array. "
                f"Received: x of type {type(x).__name__}."
            )
        x = np.asarray(x)
        self._check_input(tuple(x.shape))
        check_finite(x, "x")
        if y is not None:
            check_integer_labels(y, self.num_classes, len(x))

    def validate_shapes(self, x, y=None):
        self._check_input(tuple(x.shape))

    def _check_input(self, shape):
        if len(shape) != 2:
            raise ValueError(
                "PhysicalForwardForwardModel expects vectors (batch, features). "
                f"Received: x of shape {shape}. Flatten the inputs first."
            )

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "threshold": self.threshold,
            "normalization": self.normalization,
            "label_scale": self.label_scale,
            "measurement_normalization": self.measurement_normalization,
            "readout": self.readout,
        })
        return config
