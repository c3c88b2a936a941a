"""`ResizingConv2D` against Keras' own `Resizing` + `Conv2D`."""

import keras
import numpy as np
import pytest

from keras_local import backend
from keras_local.layers import ResizingConv2D
from tests.conftest import BACKEND


def _pair(in_size, out_size, channels, filters, kernel_size, use_bias):
    """The reference (Keras layers) and the fused layer, same weights."""
    h, w = in_size
    reference = keras.Sequential([
        keras.Input((h, w, channels)),
        keras.layers.Resizing(*out_size, interpolation="bilinear"),
        keras.layers.Conv2D(filters, kernel_size, padding="same",
                            use_bias=use_bias,
                            bias_initializer="random_normal"),
    ])
    fused = keras.Sequential([
        keras.Input((h, w, channels)),
        ResizingConv2D(filters, kernel_size, height=out_size[0],
                       width=out_size[1], use_bias=use_bias),
    ])
    fused.set_weights(reference.get_weights())
    return reference, fused


@pytest.mark.parametrize(
    "in_size, out_size, kernel_size, use_bias",
    [((8, 8), (32, 32), 3, False),   # InfoPro's stage-3 decoder (x4)
     ((16, 16), (32, 32), 3, True),  # stage 2 (x2)
     ((5, 7), (12, 9), 5, True),     # uneven factors, a larger kernel
     ((6, 6), (6, 6), 1, False)],    # no resizing, 1x1
)
def test_equals_resizing_then_conv2d(in_size, out_size, kernel_size, use_bias):
    rng = np.random.default_rng(0)
    reference, fused = _pair(in_size, out_size, 6, 4, kernel_size, use_bias)
    x = rng.normal(size=(3, *in_size, 6)).astype("float32")
    want = keras.ops.convert_to_numpy(reference(x))
    got = keras.ops.convert_to_numpy(fused(x))
    assert got.shape == (3, *out_size, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gradients_equal_resizing_then_conv2d():
    rng = np.random.default_rng(1)
    reference, fused = _pair((8, 8), (32, 32), 6, 4, 3, True)
    x = rng.normal(size=(2, 8, 8, 6)).astype("float32")
    r = rng.normal(size=(2, 32, 32, 4)).astype("float32")

    def grads(model):
        # With respect to the weights and the input.
        def loss(values, r):
            out, _ = model.stateless_call(values[:-1], [], values[-1])
            return keras.ops.sum(out * r)

        values = [v.value for v in model.trainable_variables]
        _, g = backend.value_and_grad(loss)(
            values + [keras.ops.convert_to_tensor(x)],
            keras.ops.convert_to_tensor(r),
        )
        return [keras.ops.convert_to_numpy(v) for v in g]

    for a, b in zip(grads(fused), grads(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_serialises_and_reloads(tmp_path):
    rng = np.random.default_rng(2)
    _, fused = _pair((4, 4), (8, 8), 3, 2, 3, True)
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    path = str(tmp_path / "fused.keras")
    fused.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(fused(x)), rtol=1e-6, atol=1e-6,
    )


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [({"kernel_size": 2}, (1, 4, 4, 3), "odd int"),
     ({"height": 0}, (1, 4, 4, 3), "positive ints"),
     ({}, (1, None, 4, 3), "known height"),
     ({"height": 2}, (1, 4, 4, 3), "shrinking")],
)
def test_bad_input_is_rejected(kwargs, shape, match):
    args = {"filters": 2, "kernel_size": 3, "height": 8, "width": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        layer = ResizingConv2D(**args)
        layer.build(shape)


@pytest.mark.skipif(BACKEND != "jax", reason="XLA memory analysis (JAX)")
def test_backward_keeps_no_resized_input_on_jax():
    """InfoPro's stage-3 decoder shape at batch 128: the resized
    8x8x64 -> 32x32x64 input is 32 MiB. Measured on XLA CPU (jax 0.10.2):
    gradient of a loss of the output, 96.0 MiB of temporaries through
    `Resizing` + `Conv2D`, 11.25 MiB through `ResizingConv2D`. Asserted:
    the fused layer needs less than one resized input."""
    import jax

    reference, fused = _pair((8, 8), (32, 32), 64, 12, 3, False)
    x = np.zeros((128, 8, 8, 64), "float32")
    resized_input = 128 * 32 * 32 * 64 * 4

    def temp_bytes(model):
        def loss(params, x):
            out, _ = model.stateless_call(params, [], x)
            return (out ** 2).sum()

        params = [v.value for v in model.trainable_variables]
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(
            params, x).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    fused_bytes = temp_bytes(fused)
    assert fused_bytes < resized_input < temp_bytes(reference), fused_bytes
