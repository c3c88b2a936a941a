import keras

from keras_local.api_export import keras_local_export


@keras_local_export
class LearnableBias(keras.layers.Layer):
    """Adds a learnable bias along the last axis: `y = x + b`.

    The Momentum Auxiliary Network puts one in front of the momentum copy
    of the next module, to absorb the feature discrepancy between modules.

    Args:
        bias_initializer: initializer of `b`. Defaults to `"zeros"`.
        **kwargs: passed to `keras.layers.Layer`.

    Returns:
        A layer whose output has the shape of its input.

    Example:

    ```python
    layer = LearnableBias()
    y = layer(keras.ops.ones((2, 8, 8, 16)))
    ```

    References:
        - Su et al., "Momentum Auxiliary Network for Supervised Local
          Learning", ECCV 2024.
    """

    def __init__(self, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(
                "LearnableBias needs a known last dimension. Received: "
                f"input_shape={input_shape}."
            )
        self.bias = self.add_weight(
            shape=(input_shape[-1],), initializer=self.bias_initializer,
            name="bias",
        )

    def call(self, inputs):
        return inputs + keras.ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["bias_initializer"] = keras.initializers.serialize(
            self.bias_initializer
        )
        return config
