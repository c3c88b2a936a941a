import keras
import numpy as np
from keras import ops

from keras_local.api_export import keras_local_export


@keras_local_export
class PhysicalSystemTwin(keras.layers.Layer):
    """The differentiable "digital twin" of a `SimulatedPhysicalSystem`.

    Computes the same intensity `|M exp(i s x)|^2 / n` in `keras.ops`, with
    no noise and no drift, so that backprop can run through it (the
    comparison a real lab could only make with a perfect model).

    Args:
        real: array `(input_dim, output_dim)`, real part of the medium.
        imag: array, imaginary part.
        phase_scale: float. Defaults to `np.pi`.
        normalizer: float, divides the intensity. Defaults to `input_dim`.
        **kwargs: passed to `keras.layers.Layer`.

    Returns:
        A non-trainable Keras layer.

    Example:

    ```python
    twin = keras_local.layers.SimulatedPhysicalSystem(784, 1000).digital_twin()
    y = twin(np.zeros((4, 784), "float32"))  # a differentiable Keras layer
    ```

    References:
        - Wright et al., "Deep physical neural networks trained with
          backpropagation", Nature 2022 (physics-aware training).
    """

    def __init__(self, real, imag, phase_scale=np.pi, normalizer=None, **kwargs):
        super().__init__(**kwargs)
        self._real = np.asarray(real, "float32")
        self._imag = np.asarray(imag, "float32")
        self.phase_scale = float(phase_scale)
        self.normalizer = float(normalizer or self._real.shape[0])
        self.trainable = False

    def build(self, input_shape):
        self.real = self.add_weight(shape=self._real.shape, initializer="zeros",
                                    trainable=False, name="real")
        self.imag = self.add_weight(shape=self._imag.shape, initializer="zeros",
                                    trainable=False, name="imag")
        self.real.assign(self._real)
        self.imag.assign(self._imag)

    def call(self, x):
        phase = self.phase_scale * x
        cos, sin = ops.cos(phase), ops.sin(phase)
        re = ops.matmul(cos, self.real) - ops.matmul(sin, self.imag)
        im = ops.matmul(sin, self.real) + ops.matmul(cos, self.imag)
        return (ops.square(re) + ops.square(im)) / self.normalizer

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._real.shape[1])

    def get_config(self):
        config = super().get_config()
        config.update({"real": self._real.tolist(), "imag": self._imag.tolist(),
                       "phase_scale": self.phase_scale, "normalizer": self.normalizer})
        return config
