"""Random integers that every backend draws identically.

Each backend's own generator gives a different stream for the same seed, so
two backends could never agree on a random update. Where a rule needs
integers (labels, indices) it draws them here instead: an integer hash of
(seed, position) in wrapping int32 arithmetic, written with `keras.ops`, so
JAX, TensorFlow and PyTorch, eager or compiled, return the same numbers.
"""

import collections

from keras import ops

HashConstants = collections.namedtuple(
    "HashConstants",
    ["multiplier", "shifts", "golden", "second_stream", "uniform_bits"],
)
# `_mix` is x ^= x >>> s0; x *= m; x ^= x >>> s1; x *= m; x ^= x >>> s2.
# Backend kernels that compute the same hash (`backend.eager_direction`)
# take these constants, so they are written down only here.
HASH = HashConstants(
    multiplier=0x045D9F3B,  # the "lowbias32"-style mixing constant
    shifts=(16, 15, 16),
    golden=-1640531527,  # 0x9E3779B9 as a signed int32: position -> stream
    second_stream=0x2545F491,  # xored in before the second hash of a pair
    uniform_bits=23,  # bits of a hash per uniform: exact in float32
)
_MULTIPLIER = HASH.multiplier
_GOLDEN = HASH.golden


def _shift_right(x, bits):
    # Logical shift of an int32: arithmetic shift, then clear the sign fill.
    return ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1)


def _mix(x):
    first, second, third = HASH.shifts
    x = ops.bitwise_xor(x, _shift_right(x, first))
    x = ops.multiply(x, ops.cast(_MULTIPLIER, "int32"))
    x = ops.bitwise_xor(x, _shift_right(x, second))
    x = ops.multiply(x, ops.cast(_MULTIPLIER, "int32"))
    return ops.bitwise_xor(x, _shift_right(x, third))


def seed_to_int32(seed):
    """Folds a seed tensor (any integer dtype, shape `()` or `(2,)`) into
    one int32 scalar."""
    seed = ops.reshape(ops.cast(seed, "int32"), (-1,))
    value = seed[0]
    for i in range(1, seed.shape[0]):
        value = _mix(value * ops.cast(31, "int32") + seed[i])
    return value


def portable_randint(seed, shape, maxval):
    """Integers uniform on `[0, maxval)` (up to a 2**-31 bias).

    Args:
        seed: integer seed tensor, shape `()` or `(2,)`.
        shape: output shape (entries may be dynamic scalars).
        maxval: int or int32 tensor (scalar or broadcastable to `shape`).

    Returns:
        An int32 tensor of `shape`.

    Example:

    ```python
    # The same four integers on JAX, TensorFlow and PyTorch.
    keras_local.rules.portable_randint(np.int32(0), (4,), 10)
    ```
    """
    if all(isinstance(d, int) for d in shape):
        size = 1
        for d in shape:
            size *= d
    else:  # a dynamic batch size (e.g. tf.data under TF)
        size = ops.prod(ops.stack([ops.cast(d, "int32") for d in shape]))
    position = ops.cast(ops.arange(size), "int32")
    x = _mix(
        position * ops.cast(_GOLDEN, "int32") + _mix(seed_to_int32(seed))
    )
    x = ops.bitwise_and(x, 0x7FFFFFFF)
    maxval = ops.cast(maxval, "int32")
    return ops.mod(ops.reshape(x, shape), maxval)
