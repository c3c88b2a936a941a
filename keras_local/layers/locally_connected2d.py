import keras
from keras import ops

from keras_local.api_export import keras_local_export

PADDINGS = ("valid", "same")


@keras_local_export
class LocallyConnected2D(keras.layers.Layer):
    """A 2D convolution whose weights are not shared across positions.

    Every output position `(i, j)` has its own kernel over its own
    receptive field (a "local receptive field", as in the Forward-Forward
    paper's CIFAR-10 experiments):
    `y[b, i, j, f] = sum_{u, v, c} x[b, i s + u, j s + v, c] K[i, j, (u, v, c), f] + bias[i, j, f]`
    (after zero padding with `padding="same"`), with the patch flattened in
    `(u, v, c)` row-major order. Written in `keras.ops`: the patches are
    gathered with one strided slice per kernel offset, then one `einsum`
    applies the per-position kernels, so it runs on every backend and can
    be a `ForwardForwardModel` block.

    Args:
        filters: int, output channels per position.
        kernel_size: int or pair `(height, width)` of the receptive field.
        strides: int or pair. Defaults to `1`.
        padding: `"valid"` or `"same"`. Defaults to `"valid"`.
        activation: activation name or callable. Defaults to `None`.
        use_bias: bool, one bias per position and filter. Defaults to
            `True`.
        kernel_initializer: initializer of the kernel, shape
            `(out_height, out_width, patch_size, filters)`. A Keras
            variance-scaling initializer (Glorot, He, LeCun) would count the
            positions into its fans; the layer rescales it so that each
            position is initialised like a dense layer of
            `patch_size -> filters`. Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of the bias. Defaults to `"zeros"`.
        **kwargs: passed to `keras.layers.Layer`.

    Returns:
        A layer mapping `(batch, height, width, channels)` to
        `(batch, out_height, out_width, filters)`.

    Example:

    ```python
    layer = keras_local.layers.LocallyConnected2D(8, 5, padding="same", activation="relu")
    y = layer(keras.ops.ones((2, 32, 32, 3)))  # (2, 32, 32, 8)
    ```

    References:
        - Hinton, "The Forward-Forward Algorithm: Some Preliminary
          Investigations", 2022 (sec. 4, CIFAR-10 with local receptive
          fields).
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid",
                 activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise ValueError(
                f"`filters` must be a positive int. Received: filters={filters!r}"
            )
        self.filters = filters
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        if padding not in PADDINGS:
            raise ValueError(
                f"Unknown `padding`. Expected one of {PADDINGS}. Received: "
                f"padding={padding!r}"
            )
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _output_hw(self, height, width):
        out = []
        for size, k, s in zip((height, width), self.kernel_size, self.strides):
            if self.padding == "same":
                out.append(-(-size // s))
            else:
                out.append((size - k) // s + 1)
        return tuple(out)

    def build(self, input_shape):
        if len(input_shape) != 4 or any(d is None for d in input_shape[1:]):
            raise ValueError(
                "LocallyConnected2D needs images (batch, height, width, "
                "channels) of known size: each position has its own kernel. "
                f"Received: input_shape={tuple(input_shape)}."
            )
        _, height, width, channels = input_shape
        out_h, out_w = self._output_hw(height, width)
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"The kernel {self.kernel_size} does not fit the input. "
                f"Received: input_shape={tuple(input_shape)} with "
                f"padding={self.padding!r}."
            )
        patch = self.kernel_size[0] * self.kernel_size[1] * channels
        self.kernel = self.add_weight(
            shape=(out_h, out_w, patch, self.filters),
            initializer=_per_position(self.kernel_initializer, out_h * out_w),
            name="kernel",
        )
        self.bias = (
            self.add_weight(shape=(out_h, out_w, self.filters),
                            initializer=self.bias_initializer, name="bias")
            if self.use_bias else None
        )

    def call(self, inputs):
        patches = self._patches(inputs)
        out = ops.einsum("bijk,ijkf->bijf", patches, ops.cast(self.kernel, patches.dtype))
        if self.bias is not None:
            out = out + ops.cast(self.bias, out.dtype)
        return self.activation(out)

    def _patches(self, x):
        """`(batch, out_h, out_w, kh * kw * channels)`, in `(u, v, c)`
        order: one strided slice per kernel offset (no quadratic
        identity-kernel convolution)."""
        kh, kw = self.kernel_size
        sh, sw = self.strides
        out_h, out_w = self._output_hw(x.shape[1], x.shape[2])
        if self.padding == "same":
            pad_h = max((out_h - 1) * sh + kh - x.shape[1], 0)
            pad_w = max((out_w - 1) * sw + kw - x.shape[2], 0)
            x = ops.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                            (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
        slices = [
            x[:, u:u + (out_h - 1) * sh + 1:sh, v:v + (out_w - 1) * sw + 1:sw, :]
            for u in range(kh) for v in range(kw)
        ]
        return ops.concatenate(slices, axis=-1) if len(slices) > 1 else slices[0]

    def compute_output_shape(self, input_shape):
        out_h, out_w = self._output_hw(input_shape[1], input_shape[2])
        return (input_shape[0], out_h, out_w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config


def _pair(name, value):
    pair = (value, value) if isinstance(value, int) else value
    pair = tuple(pair) if isinstance(pair, (list, tuple)) else ()
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise ValueError(
            f"`{name}` must be a positive int or a pair of them. Received: "
            f"{name}={value!r}"
        )
    return pair


def _per_position(initializer, positions):
    """Keras's variance-scaling fans multiply by every leading axis; divide
    the positions back out so each position starts like a dense layer."""
    if isinstance(initializer, keras.initializers.VarianceScaling):
        return keras.initializers.VarianceScaling(
            scale=initializer.scale * positions, mode=initializer.mode,
            distribution=initializer.distribution, seed=initializer.seed,
        )
    return initializer
