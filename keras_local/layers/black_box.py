import keras
import numpy as np
from keras import ops

from keras_local import backend
from keras_local.api_export import keras_local_export

MODES = ("auto", "numpy", "tensor")


@keras_local_export
class BlackBox(keras.layers.Layer):
    """A forward-only layer around a callable nobody may differentiate.

    Wraps a physical system, a simulator or any function: rules only call it
    forward. No gradient ever flows through it: its input and output are
    detached, and a NumPy callable is reached through
    `keras_local.backend.host_call` (JAX: `jax.pure_callback`, which also
    runs under `jax.jit`; TensorFlow: `tf.numpy_function`, which runs in
    `tf.function` graphs but not under XLA `jit_compile=True`; PyTorch: a
    direct call on NumPy copies). The callable may be noisy and may drift
    between calls; its output shape may not change: a call whose output
    shape differs from the first one raises `ValueError`. On JAX in a
    one-core process, import keras_local before anything runs on JAX: it
    then starts JAX with the two CPU worker threads `jax.pure_callback`
    needs not to hang (if JAX started first, a `RuntimeWarning` says so).

    Args:
        function: callable of one batch `(batch, ...) -> (batch, ...)`:
            either a NumPy function (NumPy in, NumPy out) or a Keras callable
            (a layer, or a function of `keras.ops` tensors).
        mode: `"numpy"`, `"tensor"` or `"auto"` (probe `function` once with
            a NumPy batch at build: a `np.ndarray` result means `"numpy"`).
            Defaults to `"auto"`.
        output_dtype: dtype of the output. Defaults to `"float32"`.
        **kwargs: passed to `keras.layers.Layer`.

    Returns:
        A Keras layer with no trainable weights.

    Example:

    ```python
    system = keras_local.layers.SimulatedPhysicalSystem(input_dim=784, output_dim=1000)
    layer = keras_local.layers.BlackBox(system)  # a NumPy callable: runs on the host
    y = layer(np.zeros((4, 784), "float32"))
    ```

    References:
        - Momeni et al., "Backpropagation-free Training of Deep Physical
          Neural Networks", Science 2023.
    """

    def __init__(self, function, mode="auto", output_dtype="float32", **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(
                "`function` must be callable. Received: "
                f"function={function!r} of type {type(function).__name__}"
            )
        if mode not in MODES:
            raise ValueError(
                f"Unknown `mode`. Expected one of {MODES}. Received: mode={mode!r}"
            )
        self.function = function
        self.mode = mode
        self.output_dtype = output_dtype
        self._feature_shape = None
        self.trainable = False

    def build(self, input_shape):
        feature_shape = tuple(input_shape[1:])
        if any(d is None for d in feature_shape):
            raise ValueError(
                "BlackBox needs a known input shape apart from the batch axis. "
                f"Received: input_shape={tuple(input_shape)}."
            )
        probe = self.function(np.zeros((2,) + feature_shape, "float32"))
        if self.mode == "auto":
            self.mode = "numpy" if isinstance(probe, np.ndarray) else "tensor"
        shape = tuple(int(d) for d in np.shape(ops.convert_to_numpy(probe)))
        if len(shape) < 1 or shape[0] != 2:
            raise ValueError(
                "A black box must map a batch (batch, ...) to a batch of the "
                f"same size. Received: a batch of 2 gave shape {shape}."
            )
        self._feature_shape = shape[1:]
        self.built = True

    def _checked(self, *arrays):
        out = np.asarray(self.function(*arrays))
        expected = (arrays[0].shape[0],) + tuple(self._feature_shape)
        if out.shape != expected:
            raise ValueError(
                f"The black box {self.name} changed its output shape. Expected "
                f"{expected} (the shape seen at build, for this batch). "
                f"Received: {out.shape}. A black box must keep a fixed output "
                "shape; wrap it so that it does."
            )
        return out.astype(self.output_dtype)

    def call(self, inputs):
        inputs = backend.stop_gradient(ops.convert_to_tensor(inputs))
        if self.mode == "numpy":
            concrete = _concrete(inputs)
            if concrete is not None:
                # Eager: call directly, so errors surface as they are.
                return ops.convert_to_tensor(self._checked(concrete))
            shape = (inputs.shape[0],) + tuple(self._feature_shape)
            return backend.host_call(self._checked, [inputs], (shape, self.output_dtype))
        out = self.function(inputs)
        got = tuple(out.shape[1:])
        if got != tuple(self._feature_shape):
            raise ValueError(
                f"The black box {self.name} changed its output shape. Expected "
                f"(batch,) + {tuple(self._feature_shape)}. Received: "
                f"{tuple(out.shape)}."
            )
        return backend.stop_gradient(ops.cast(out, self.output_dtype))

    def compute_output_shape(self, input_shape):
        if self._feature_shape is None:
            self.build(input_shape)
        return (input_shape[0],) + tuple(self._feature_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "function": keras.saving.serialize_keras_object(self.function),
                "mode": self.mode,
                "output_dtype": self.output_dtype,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["function"] = keras.saving.deserialize_keras_object(config["function"])
        return cls(**config)


def _concrete(x):
    """`x` as NumPy when it holds values (eager), `None` inside a trace
    (under a trace the call goes through `backend.host_call`, and an error
    raised by the box reaches the caller wrapped by the backend, e.g. as
    JAX's `JaxRuntimeError` carrying the `ValueError` message)."""
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # noqa: BLE001 - tracers refuse conversion
        return None
