import keras
from keras import ops

from keras_local.api_export import keras_local_export
from keras_local.rules import target_projection as tp


@keras_local_export
class FeedbackAlignment(keras.layers.Wrapper):
    """Feedback alignment (Lillicrap et al. 2016) for any layer with a
    `kernel`: `Dense`, `Conv1D`/`Conv2D`/`Conv3D`, `Conv2DTranspose`,
    `EinsumDense`, ...

    The forward pass is the wrapped layer's, `f(L(x; W) + b)` with `L` its
    linear map (a matrix product, a convolution) and `f` its `activation`.
    In the backward pass the error sent to the layer below goes through a
    fixed random matrix `B` (same shape as `W`, non-trainable, seeded, saved
    with the model) instead of `W`: `dx = L^T(e * f'(a); B)` (for `Dense`,
    `(e * f'(a)) B^T`; for a convolution, the transposed convolution of
    `e * f'(a)` with `B`), while the layer's own weights keep their usual
    gradients (`dW = x^T (e * f'(a))` for `Dense`). Implemented with
    `keras.ops.custom_gradient`, so it trains with plain `fit` (and
    `jit_compile`) on every backend inside any Sequential or functional
    model.

    The wrapped layer must be affine in its input apart from its
    `activation` (true of dense and convolutional layers).

    Args:
        layer: a Keras layer with a `kernel` weight (and optionally
            `activation`).
        feedback_initializer: initializer of `B`. Defaults to
            `"glorot_uniform"`.
        seed: int or `None`, seeds `B`. Defaults to `None`.
        **kwargs: passed to `keras.layers.Wrapper`.

    Returns:
        A layer with the wrapped layer's outputs.

    Example:

    ```python
    (x_train, y_train), _ = keras_local.datasets.load_mnist()
    x_train = x_train[..., None] / 255.0
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras_local.layers.FeedbackAlignment(
            keras.layers.Conv2D(16, 3, activation="relu"), seed=0),
        keras.layers.Flatten(),
        keras_local.layers.FeedbackAlignment(
            keras.layers.Dense(500, activation="tanh"), seed=1),
        keras_local.layers.FeedbackAlignment(keras.layers.Dense(10), seed=2),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    model.fit(x_train, y_train, batch_size=100, epochs=1)
    ```

    References:
        - Lillicrap, Cownden, Tweed & Akerman, "Random synaptic feedback
          weights support error backpropagation for deep learning", Nature
          Communications, 2016.
    """

    def __init__(self, layer, feedback_initializer="glorot_uniform", seed=None,
                 **kwargs):
        if not isinstance(layer, keras.layers.Layer) or isinstance(
            layer, keras.Model
        ):
            raise ValueError(
                "FeedbackAlignment wraps a Keras layer with a `kernel` weight "
                "(e.g. `Dense`, `Conv2D`). Received: "
                f"layer={layer!r} of type {type(layer).__name__}."
            )
        if isinstance(layer, (keras.layers.RNN, keras.layers.Wrapper)):
            raise ValueError(
                "FeedbackAlignment wraps a layer that is affine in its input "
                "apart from its activation (dense, convolutional). Received: "
                f"layer of type {type(layer).__name__}. For recurrent layers "
                "use `TargetProjectionModel` or `DirectFeedbackAlignmentModel`."
            )
        if seed is not None and (
            not isinstance(seed, int) or isinstance(seed, bool)
        ):
            raise TypeError(
                f"`seed` must be an int or None. Received: seed={seed!r}"
            )
        super().__init__(layer, **kwargs)
        self.seed = seed
        self.feedback_initializer = keras.initializers.get(
            feedback_initializer
        )

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        if not self.layer.trainable:
            raise ValueError(
                "FeedbackAlignment wraps a trainable layer. Received: "
                f"{self.layer.name} with `trainable=False`. Leave a frozen "
                "layer unwrapped, or unfreeze it before wrapping."
            )
        kernel = getattr(self.layer, "kernel", None)
        positions = [
            k for k, v in enumerate(self.layer.trainable_variables)
            if v is kernel
        ]
        if not positions or self.layer.non_trainable_variables:
            raise ValueError(
                "FeedbackAlignment needs a layer whose trainable weights "
                "include a `kernel` and which has no non-trainable state "
                f"(e.g. `Dense`, `Conv2D`). Received: {self.layer.name} of "
                f"type {type(self.layer).__name__} with weights "
                f"{[v.path for v in self.layer.weights]}."
            )
        self._kernel_index = positions[0]
        config = keras.initializers.serialize(self.feedback_initializer)
        initializer = keras.initializers.deserialize(config)
        if self.seed is not None and hasattr(initializer, "seed"):
            initializer.seed = self.seed
        self.feedback = self.add_weight(
            shape=tuple(kernel.shape),
            initializer=initializer,
            trainable=False,
            name="feedback",
        )
        self.built = True

    def _linear(self, x, params):
        """The wrapped layer without its activation, with `params` as its
        trainable weights."""
        layer = self.layer
        activation = getattr(layer, "activation", None)
        if activation is not None:
            layer.activation = None
        try:
            outputs, _ = layer.stateless_call(params, [], x)
        finally:
            if activation is not None:
                layer.activation = activation
        return outputs

    def call(self, inputs):
        layer = self.layer
        x = ops.cast(inputs, layer.compute_dtype)
        outputs = tp.feedback_alignment_call(
            self._linear, x,
            [ops.convert_to_tensor(v) for v in layer.trainable_variables],
            ops.convert_to_tensor(self.feedback),
            kernel_index=self._kernel_index,
        )
        activation = getattr(layer, "activation", None)
        if activation is not None:
            outputs = activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "feedback_initializer": keras.initializers.serialize(
                    self.feedback_initializer
                ),
                "seed": self.seed,
            }
        )
        return config
