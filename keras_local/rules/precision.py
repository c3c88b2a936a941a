"""Mixed precision: where a rule's numbers must stay in float32."""

import keras
from keras import ops

_HALF_PRECISION = ("float16", "bfloat16")


def full_precision(x):
    """`x` cast to float32 if it is float16 or bfloat16, else unchanged.

    Under a `mixed_float16`/`mixed_bfloat16` policy blocks compute in half
    precision. A local loss, and the sums of squares and norms it reads,
    are computed in float32, as Keras computes its own losses: a float16
    sum of squares over a wide layer overflows past 65504, and goodness
    scores a few units apart would be rounded to steps of 2 or more. The
    gradient flows back through the cast to the half-precision activity.
    """
    x = ops.convert_to_tensor(x)
    if keras.backend.standardize_dtype(x.dtype) in _HALF_PRECISION:
        return ops.cast(x, "float32")
    return x


def loss_dtype():
    """The dtype a rule sums its losses and scores in: float64 when Keras
    computes in float64 (`keras.config.set_floatx("float64")` or a float64
    global dtype policy), else float32, half precision included (above)."""
    if keras.config.floatx() == "float64":
        return "float64"
    compute = keras.config.dtype_policy().compute_dtype
    return "float64" if compute == "float64" else "float32"
