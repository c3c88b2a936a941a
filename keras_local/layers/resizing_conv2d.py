import keras
import numpy as np
from keras import ops

from keras_local.api_export import keras_local_export


@keras_local_export
class ResizingConv2D(keras.layers.Layer):
    """Bilinear resizing followed by a stride-1 `"same"` convolution, without
    the resized input.

    Computes `Conv2D(filters, kernel_size, padding="same")` applied to
    `Resizing(height, width, "bilinear")(inputs)`, but in another order:
    resizing acts on each channel alone and a convolution tap mixes the
    channels of one pixel, so the two commute. Each tap's channel mixing
    runs at the input's resolution; the bilinear interpolation, shifted by
    the tap's offset (zero outside the image, as `"same"` padding), is then
    applied to its `filters`-channel result as two small matrices, one per
    axis (half-pixel centres, edges clamped: Keras' `Resizing`). The
    resized `channels`-wide map (e.g.
    32x32x64 when InfoPro's decoder enlarges 8x8x64 features to a CIFAR
    image) is never formed, and nothing input-sized at the output
    resolution is kept for the backward pass. The result equals the two
    layers' up to float rounding.

    Args:
        filters: int, output channels.
        kernel_size: odd int, the square kernel's size. Defaults to `3`.
        height: int, the resized height.
        width: int, the resized width.
        use_bias: bool. Defaults to `True`.
        kernel_initializer: initializer of the `(k, k, in, filters)`
            kernel, `Conv2D`'s layout. Defaults to `"glorot_uniform"`.
        bias_initializer: Defaults to `"zeros"`.
        **kwargs: passed to `keras.layers.Layer`.

    Returns:
        A layer mapping `(batch, h, w, in)` to `(batch, height, width,
        filters)` (channels last).

    Example:

    ```python
    layer = keras_local.layers.ResizingConv2D(12, 3, height=32, width=32, use_bias=False)
    y = layer(keras.ops.ones((2, 8, 8, 64)))  # (2, 32, 32, 12)
    ```

    References:
        - Wang et al., "Revisiting Locally Supervised Learning: an
          Alternative to End-to-end Training", ICLR 2021 (the decoder that
          resizes features to the image before a convolution).
    """

    def __init__(self, filters, kernel_size=3, height=None, width=None,
                 use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                "`kernel_size` must be an odd int >= 1 (a square \"same\" "
                f"kernel). Received: kernel_size={kernel_size!r}"
            )
        if not all(isinstance(v, int) and v > 0 for v in (height, width, filters)):
            raise ValueError(
                "`filters`, `height` and `width` must be positive ints. "
                f"Received: filters={filters!r}, height={height!r}, "
                f"width={width!r}"
            )
        if keras.config.image_data_format() != "channels_last":
            raise ValueError(
                "ResizingConv2D works on channels-last images. Received: "
                f"image_data_format={keras.config.image_data_format()!r}"
            )
        self.filters = filters
        self.kernel_size = kernel_size
        self.height = height
        self.width = width
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) != 4 or None in tuple(input_shape[1:]):
            raise ValueError(
                "ResizingConv2D takes (batch, height, width, channels) with "
                f"known height, width and channels. Received: "
                f"input_shape={input_shape}"
            )
        if input_shape[1] > self.height or input_shape[2] > self.width:
            raise ValueError(
                "ResizingConv2D enlarges (or keeps) the image; shrinking "
                "would need antialiasing choices it does not make. Received: "
                f"input_shape={input_shape} with height={self.height}, "
                f"width={self.width}"
            )
        k = self.kernel_size
        # The tap-shifted interpolation matrices depend on shapes only.
        self._rows = _shifted_bilinear(self.height, input_shape[1], k)
        self._cols = _shifted_bilinear(self.width, input_shape[2], k)
        self.kernel = self.add_weight(
            shape=(k, k, input_shape[-1], self.filters),
            initializer=self.kernel_initializer, name="kernel",
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.filters,), initializer=self.bias_initializer,
                name="bias",
            )

    def call(self, inputs):
        rows = ops.convert_to_tensor(self._rows, inputs.dtype)
        cols = ops.convert_to_tensor(self._cols, inputs.dtype)
        kernel = ops.cast(self.kernel, inputs.dtype)
        # Channel mixing per tap at the input's resolution, then the
        # (shifted) interpolation along the width, then along the height.
        mixed = ops.einsum("nhwc,abcf->nabhwf", inputs, kernel)
        mixed = ops.einsum("bjq,nabpqf->napjf", cols, mixed)
        out = ops.einsum("aip,napjf->nijf", rows, mixed)
        if self.bias is not None:
            out = out + ops.cast(self.bias, out.dtype)
        return out

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "height": self.height,
            "width": self.width,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "bias_initializer": keras.initializers.serialize(
                self.bias_initializer
            ),
        })
        return config


def _shifted_bilinear(out_size, in_size, kernel_size):
    """`(kernel_size, out_size, in_size)`: row `i` of slice `a` holds the
    bilinear weights (half-pixel centres, clamped at the edges, no
    antialiasing) of output position `i + a - kernel_size // 2`, or zeros
    where that falls outside the output."""
    scale = in_size / out_size
    src = np.clip((np.arange(out_size) + 0.5) * scale - 0.5, 0, in_size - 1)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, in_size - 1)
    frac = src - low
    weights = np.zeros((out_size, in_size), "float64")
    np.add.at(weights, (np.arange(out_size), low), 1.0 - frac)
    np.add.at(weights, (np.arange(out_size), high), frac)
    half = kernel_size // 2
    taps = np.zeros((kernel_size, out_size, in_size), "float32")
    for a in range(kernel_size):
        shift = a - half
        for i in range(out_size):
            if 0 <= i + shift < out_size:
                taps[a, i] = weights[i + shift]
    return taps
