"""Zeroth-order and forward-gradient estimators, as pure functions.

Everything here is written with `keras.ops` and `keras_local.backend`, on
flat lists of tensors. A random direction `z` is never stored: it is a pure
function of a seed tensor, so it is regenerated, identically, wherever it is
needed (MeZO's memory trick, Malladi et al. 2023).
"""

import math

from keras import ops

from keras_local import backend
from keras_local.rules.ordering import after  # noqa: F401 (used as zo.after)
from keras_local.rules.portable_random import HASH
from keras_local.rules.portable_random import _mix
from keras_local.rules.portable_random import portable_randint
from keras_local.rules.portable_random import seed_to_int32

ESTIMATORS = ("spsa", "forward_gradient")
DISTRIBUTIONS = ("gaussian", "rademacher")
GENERATORS = ("portable", "backend")
SPARSITY_MODES = ("random", "magnitude")

# Salts that keep the streams of different queries and variables apart.
_QUERY_SALT = 1_000_003
_VARIABLE_SALT = 7_919


def direction_seed(seed, query, index):
    """Seed of query `query`'s direction on variable `index` (a pure
    function of the step seed)."""
    salt = 1 + int(query) * _QUERY_SALT + int(index) * _VARIABLE_SALT
    return seed + ops.cast(ops.convert_to_tensor([salt, 0]), seed.dtype)


def direction(shape, seed, distribution="gaussian", dtype="float32",
              generator="portable"):
    """A random direction of `shape`, regenerated identically from `seed`.

    With `generator="portable"` (the default) every entry is an integer hash
    of (seed, position), written with `keras.ops`: JAX, TensorFlow and
    PyTorch draw the same numbers (Gaussian up to float rounding of `log`,
    `sqrt` and the cosine, a polynomial on JAX and TensorFlow and `cos` on
    torch), and under XLA the whole draw is elementwise, so it fuses into
    its consumer (`w + eps z`, the update) and never occupies memory of its
    own. `generator="backend"` uses `keras_local.backend.random_normal`
    (each backend a different stream; on JAX, threefry's counters are
    materialised).
    """
    shape = tuple(int(d) for d in shape)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"Unknown distribution. Expected one of {DISTRIBUTIONS}. "
            f"Received: distribution={distribution!r}"
        )
    if generator == "backend":
        if distribution == "gaussian":
            return backend.random_normal(shape, seed, dtype=dtype)
        bits = portable_randint(seed, shape, 2)
        return ops.cast(bits * 2 - 1, dtype)
    if generator != "portable":
        raise ValueError(
            f"Unknown generator. Expected one of {GENERATORS}. "
            f"Received: generator={generator!r}"
        )
    size = 1
    for d in shape:
        size *= d
    position = ops.reshape(ops.arange(size, dtype="int32"), shape)
    return direction_at(position, seed, distribution, dtype)


_TWO_PI = 2.0 * math.pi
_UNIFORM_MASK = (1 << HASH.uniform_bits) - 1
_UNIFORM_SCALE = 2.0 ** -HASH.uniform_bits


def direction_at(position, seed, distribution="gaussian", dtype="float32"):
    """The entries at flat positions `position` (an int32 tensor of any
    shape) of the portable direction drawn from `seed`.

    `direction(shape, seed)` is `direction_at(arange(size).reshape(shape),
    seed)`, so a slice of a direction (a block of a kernel's columns) can be
    drawn without the rest.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"Unknown distribution. Expected one of {DISTRIBUTIONS}. "
            f"Received: distribution={distribution!r}"
        )
    key = _mix(seed_to_int32(seed))
    # Eager PyTorch: the same numbers from in-place kernels (4x faster there,
    # where each op below would be its own pass over a fresh tensor).
    fast = backend.eager_direction(position, key, distribution, HASH)
    if fast is not None:
        return ops.cast(fast, dtype)
    h1 = _mix(ops.cast(position, "int32") * ops.cast(HASH.golden, "int32") + key)
    if distribution == "rademacher":
        return ops.cast(ops.bitwise_and(h1, 1) * 2 - 1, dtype)
    h2 = _mix(ops.bitwise_xor(h1, ops.cast(HASH.second_stream, "int32")))
    # 23 random bits each: uniforms on (0, 1), exact in float32.
    scale = _UNIFORM_SCALE
    u1 = (ops.cast(ops.bitwise_and(h1, _UNIFORM_MASK), "float32") + 0.5) * scale
    u2 = ops.cast(ops.bitwise_and(h2, _UNIFORM_MASK), "float32") * scale
    if backend.fuses_elementwise(u2):
        cosine = _cos_two_pi(u2)
    else:  # eager: one vectorised cos beats the polynomial's 20 passes
        cosine = ops.cos(_TWO_PI * u2)
    z = ops.sqrt(-2.0 * ops.log(u1)) * cosine
    return ops.cast(z, dtype)


# Taylor coefficients of cos(t) in powers of t**2, through t**12: on
# |t| <= pi / 2 the truncation error is below 1e-8.
_COS_COEFFICIENTS = (1.0, -1.0 / 2, 1.0 / 24, -1.0 / 720, 1.0 / 40320,
                     -1.0 / 3628800, 1.0 / 479001600)


def _cos_two_pi(u):
    """`cos(2 pi u)` for `u` in [0, 1), as a polynomial.

    XLA's CPU `cos` is not vectorised: it made a Gaussian draw 4.5x as
    slow as a copy of the same size and most of a full-parameter MeZO step.
    Folding `u` onto [0, 1/4] and a degree-12 polynomial costs about a
    copy once fused (JAX, TensorFlow) and agrees with `cos` to float32
    rounding.
    """
    a = ops.abs(u - 0.5)  # cos(2 pi u) = -cos(2 pi a), a in [0, 1/2]
    upper = ops.greater(a, 0.25)
    b = ops.where(upper, 0.5 - a, a)  # cos(2 pi a) = -cos(2 pi b) above 1/4
    t2 = ops.square(_TWO_PI * b)
    c = _COS_COEFFICIENTS[-1]
    for coefficient in _COS_COEFFICIENTS[-2::-1]:
        c = c * t2 + coefficient
    return ops.where(upper, c, -c)


def perturb(values, seeds, scales, epsilon, distribution="gaussian",
            generator="portable"):
    """`values[i] + epsilon * scales[i] * z_i`, z_i regenerated from
    `seeds[i]`; `None` seeds leave a value unperturbed. `scales[i]` is a
    scalar or a 0/1 mask (sparsity, block-wise), or `None` for 1."""
    out = []
    for v, s, m in zip(values, seeds, scales):
        if s is None:
            out.append(v)
            continue
        z = direction(v.shape, s, distribution, v.dtype, generator)
        if m is not None:
            z = z * ops.cast(m, v.dtype)
        out.append(v + ops.cast(epsilon, v.dtype) * z)
    return out


def spsa_projected_gradient(loss_plus, loss_minus, epsilon):
    """Two-sided SPSA: `(f(x + eps z) - f(x - eps z)) / (2 eps)`."""
    return (loss_plus - loss_minus) / (2.0 * epsilon)


def one_sided_projected_gradient(loss_plus, loss, epsilon):
    """One-sided SPSA: `(f(x + eps z) - f(x)) / eps`."""
    return (loss_plus - loss) / epsilon


def spsa_estimate(fn, values, seed, epsilon, num_queries=1, one_sided=False,
                  distribution="gaussian", generator="portable"):
    """The SPSA gradient estimate of `fn(values) -> scalar`.

    `g = mean_k pg_k z_k`, `pg_k` the finite-difference projected gradient
    along `z_k`. A reference implementation (it materialises `g`); the model
    uses the same seeds so its updates match this estimate.

    Returns:
        `(grads, projected_gradients)`.
    """
    _check_epsilon(epsilon)
    _check_num_queries(num_queries)
    base = fn(values) if one_sided else None
    grads = [ops.zeros_like(v) for v in values]
    pgs = []
    for k in range(num_queries):
        seeds = [direction_seed(seed, k, i) for i in range(len(values))]
        ones = [None] * len(values)
        plus = fn(perturb(values, seeds, ones, epsilon, distribution, generator))
        if one_sided:
            pg = one_sided_projected_gradient(plus, base, epsilon)
        else:
            minus = fn(
                perturb(values, seeds, ones, -epsilon, distribution, generator)
            )
            pg = spsa_projected_gradient(plus, minus, epsilon)
        pgs.append(pg)
        for i, v in enumerate(values):
            z = direction(v.shape, seeds[i], distribution, v.dtype, generator)
            grads[i] = grads[i] + ops.cast(pg, v.dtype) * z / num_queries
    return grads, pgs


def forward_gradient(jvp_value, tangents):
    """The forward gradient `(grad f . v) v` of one tangent `v`."""
    return [ops.cast(jvp_value, t.dtype) * t for t in tangents]


def forward_gradient_estimate(fn, values, seed, num_queries=1,
                              distribution="gaussian", generator="portable"):
    """Forward-gradient estimate of `fn(values)`: one `jvp` per tangent.

    Returns:
        `(grads, loss, projected_gradients)`.
    """
    _check_num_queries(num_queries)
    grads = [ops.zeros_like(v) for v in values]
    pgs = []
    loss = None
    for k in range(num_queries):
        tangents = [
            direction(v.shape, direction_seed(seed, k, i), distribution,
                      v.dtype, generator)
            for i, v in enumerate(values)
        ]
        loss, pg = backend.jvp(fn, values, tangents)
        pgs.append(pg)
        for i, g in enumerate(forward_gradient(pg, tangents)):
            grads[i] = grads[i] + g / num_queries
    return grads, loss, pgs


def random_mask(shape, seed, sparsity, dtype="float32"):
    """1 on a random `1 - sparsity` fraction of the entries, 0 elsewhere."""
    u = backend.random_uniform(tuple(shape), seed, dtype="float32")
    return ops.cast(u >= sparsity, dtype)


def magnitude_mask(value, sparsity):
    """1 on the `1 - sparsity` fraction of entries of smallest magnitude
    (Sparse MeZO's choice: large weights stay fixed)."""
    flat = ops.reshape(ops.abs(value), (-1,))
    size = int(flat.shape[0])
    keep = max(1, int(round(size * (1.0 - sparsity))))
    threshold = ops.sort(flat)[keep - 1]
    return ops.cast(ops.abs(value) <= threshold, value.dtype)


def _check_epsilon(epsilon):
    if not epsilon > 0:
        raise ValueError(
            "`epsilon` must be a float > 0 (the perturbation scale). "
            f"Received: epsilon={epsilon!r}"
        )


def _check_num_queries(num_queries):
    if not isinstance(num_queries, int) or isinstance(num_queries, bool) or num_queries < 1:
        raise ValueError(
            "`num_queries` must be an int >= 1 (random directions averaged "
            f"per step). Received: num_queries={num_queries!r}"
        )
