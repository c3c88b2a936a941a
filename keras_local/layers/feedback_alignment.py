import keras
from keras import ops

from keras_local.api_export import keras_local_export
from keras_local.rules import target_projection as tp


@keras_local_export
class FeedbackAlignment(keras.layers.Wrapper):
    """Feedback alignment (Lillicrap et al. 2016) for a `Dense` layer.

    The forward pass is the wrapped layer's, `f(x W + b)`; in the backward
    pass the error sent to the layer below goes through a fixed random
    matrix `B` (same shape as `W`, non-trainable, seeded, saved with the
    model) instead of `W`: `dx = (e * f'(a)) B^T`, while the layer's own
    weights keep their usual gradients `dW = x^T (e * f'(a))`. Implemented
    with `keras.ops.custom_gradient`, so it trains with plain `fit` (and
    `jit_compile`) on every backend inside any Sequential or functional
    model.

    Args:
        layer: a `keras.layers.Dense` layer.
        feedback_initializer: initializer of `B`. Defaults to
            `"glorot_uniform"`.
        seed: int or `None`, seeds `B`. Defaults to `None`.
        **kwargs: passed to `keras.layers.Wrapper`.

    Returns:
        A layer with the wrapped layer's outputs.

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((784,)),
        keras_local.layers.FeedbackAlignment(
            keras.layers.Dense(500, activation="tanh"), seed=0),
        keras_local.layers.FeedbackAlignment(keras.layers.Dense(10), seed=1),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    ```

    References:
        - Lillicrap, Cownden, Tweed & Akerman, "Random synaptic feedback
          weights support error backpropagation for deep learning", Nature
          Communications, 2016.
    """

    def __init__(self, layer, feedback_initializer="glorot_uniform", seed=None,
                 **kwargs):
        if not isinstance(layer, keras.layers.Dense):
            raise ValueError(
                "FeedbackAlignment wraps a `keras.layers.Dense` layer. "
                f"Received: layer={layer!r} of type {type(layer).__name__}. "
                "For other layers use `DirectFeedbackAlignmentModel` or "
                "`TargetProjectionModel`."
            )
        if seed is not None and not isinstance(seed, int):
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
        config = keras.initializers.serialize(self.feedback_initializer)
        initializer = keras.initializers.deserialize(config)
        if self.seed is not None and hasattr(initializer, "seed"):
            initializer.seed = self.seed
        self.feedback = self.add_weight(
            shape=tuple(self.layer.kernel.shape),
            initializer=initializer,
            trainable=False,
            name="feedback",
        )
        self.built = True

    def call(self, inputs):
        layer = self.layer
        x = ops.cast(inputs, layer.compute_dtype)
        outputs = tp.feedback_alignment_matmul(
            x, ops.convert_to_tensor(layer.kernel),
            ops.convert_to_tensor(self.feedback),
        )
        if layer.use_bias:
            outputs = outputs + layer.bias
        if layer.activation is not None:
            outputs = layer.activation(outputs)
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
