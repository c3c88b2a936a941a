"""Backend-agnostic pieces of the backend layer (keras only)."""

import contextlib

import keras

# The dtype the backend's `keras.random` expects of a seed (Keras's
# `random_seed_dtype()`, which is not public).
_SEED_DTYPE = {"jax": "uint32", "tensorflow": "int64", "torch": "int32"}[
    keras.backend.backend()
]


class _SeedTensor(keras.random.SeedGenerator):
    """A seed tensor in the form `keras.random` takes on every backend.

    `keras.random` accepts an int or a `SeedGenerator` (a tensor only on
    JAX). This generator hands out the given tensor and holds no state
    variable, so it can be made inside a traced step, and importing
    keras_local creates nothing on a device (a user can still configure the
    backend's devices after `import keras_local`).
    """

    def __init__(self, seed):
        # No `super().__init__()`: that would create the state variable.
        self.name = "keras_local_seed"
        self._seed = seed

    def next(self, ordered=True):
        return self._seed


def seed_from_int(seed):
    """Returns the seed tensor (`uint32`, shape `(2,)`) for a Python int."""
    return keras.ops.convert_to_tensor([0, int(seed)], dtype="uint32")


def _draw(sampler, shape, seed, dtype):
    seed = keras.ops.cast(seed, _SEED_DTYPE)
    if tuple(seed.shape) != (2,):
        raise ValueError(
            "A seed tensor must have shape (2,). "
            f"Received: seed with shape {tuple(seed.shape)}. Build one with "
            "`keras_local.backend.seed_from_int(i)`."
        )
    return sampler(shape, dtype=dtype, seed=_SeedTensor(seed))


def random_normal(shape, seed, dtype="float32"):
    """Standard normal draw, regenerated identically from `seed`."""
    return _draw(keras.random.normal, shape, seed, dtype)


def random_uniform(shape, seed, dtype="float32"):
    """Uniform draw on [0, 1), regenerated identically from `seed`."""
    return _draw(keras.random.uniform, shape, seed, dtype)


class MemoryReport:
    """What the memory probe measured.

    Attributes:
        bytes: peak temporary bytes of one train step, or `None` where the
            backend cannot measure it.
        description: what exactly was measured, or why nothing was.
        backend: the Keras backend.
    """

    def __init__(self, bytes, description, backend):
        self.bytes = None if bytes is None else int(bytes)
        self.description = description
        self.backend = backend

    @property
    def available(self):
        return self.bytes is not None

    def __repr__(self):
        size = "n/a" if self.bytes is None else f"{self.bytes / 2**20:.2f} MiB"
        return f"MemoryReport({size}, backend={self.backend}: {self.description})"


def build_for_step(model, x, y, sample_weight=None):
    """Builds model, optimizer and metrics for a batch, without training."""
    if hasattr(model, "_prepare_for_batch"):
        # As `fit` prepares a local model (build, one symbolic call), so
        # that none of it runs inside the measured step.
        model._prepare_for_batch((x, y, sample_weight))
    model._symbolic_build(data_batch=(x, y, sample_weight))
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def global_random_state():
    """The backend's global random state, for `restore_global_random_state`.

    JAX and TensorFlow draw Keras's random ops (dropout, noise layers) from
    seed-generator state that a rule passes explicitly, so they have no
    global state to keep: `None`."""
    return None


def restore_global_random_state(state):
    """Rewinds the global random state to `state` (no-op on JAX and
    TensorFlow)."""
    del state


def eager_direction(position, key, distribution, constants):
    """A backend's faster kernel for the portable random direction, or
    `None` to use the portable `keras.ops` version (always, on JAX and
    TensorFlow: XLA fuses it, and their eager ops cannot work in place)."""
    del position, key, distribution, constants
    return None


def per_replica_loss(loss):
    """`loss` as one replica's mean (identity outside `tf.distribute`)."""
    return loss


def build_scope(model):
    """The context in which `model`'s variables are created (TensorFlow:
    its `tf.distribute` strategy's scope)."""
    return contextlib.nullcontext()


def num_replicas(model):
    """How many replicas each step of `model` is split across (TensorFlow:
    its `tf.distribute` strategy's; elsewhere 1)."""
    return 1


def replica_mean(value):
    """The mean of `value` over the replicas (identity outside
    `tf.distribute`)."""
    return value


def loss_scaled_gradients(optimizer, grads, optimizer_values=None):
    """`grads` as a `LossScaleOptimizer` expects them.

    Under the `mixed_float16` policy `compile` wraps the optimizer in a
    `LossScaleOptimizer`, whose `apply` divides the gradients by its current
    scale: it assumes they came from the loss times that scale (Keras's own
    `train_step` calls `optimizer.scale_loss`). Local rules differentiate
    their own, unscaled losses (or estimate gradients without any loss), so
    they would silently train with steps thousands of times too small.
    Multiplying by the scale first gives the inner optimizer the true
    gradients and keeps the wrapper's skipping of non-finite steps. Other
    optimizers get `grads` unchanged.

    Args:
        optimizer: the compiled optimizer.
        grads: list of gradient tensors (or `None`).
        optimizer_values: on JAX, the optimizer's variable values in the
            order of `optimizer.variables` (its state during `fit`);
            `None` reads the variables themselves.

    Returns:
        A list like `grads`.
    """
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return grads
    if optimizer_values is None:
        scale = optimizer.dynamic_scale.value
    else:
        mapping = list(zip(optimizer.variables, optimizer_values))
        with keras.StatelessScope(state_mapping=mapping):
            scale = optimizer.dynamic_scale.value
    return [
        None if g is None else g * keras.ops.cast(scale, g.dtype) for g in grads
    ]
