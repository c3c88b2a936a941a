"""The backend layer: the only package of keras_local that imports jax,
tensorflow or torch.

The implementation is picked once, at import, from `keras.backend.backend()`.
Everything else in keras_local is written with `keras.ops` and the names
exported here:

- `value_and_grad(fn, has_aux=False)`: differentiates `fn(params, *args)` with
  respect to `params`, a flat list of tensors. Unconnected gradients are
  zeros; values and aux values come back detached.
- `jvp(fn, primals, tangents)`: forward-mode product of `fn(params)` with
  `tangents`, returns `(output, tangent_output)`.
- `stop_gradient(x)`: detaches every tensor of a structure.
- `barrier(structure)`: the structure, unchanged, but computed as a whole
  before any of it is used, and never fused into (recomputed by) its
  consumers (JAX: `jax.lax.optimization_barrier`; TF, torch: identity).
- `random_normal(shape, seed)`, `random_uniform(shape, seed)`: draws
  regenerated from a seed tensor: the same seed gives the same draw every
  time within one compiled step.
- `host_call(fn, inputs, output_spec)`: calls a NumPy function of NumPy
  arrays from a step (JAX: `jax.pure_callback`; TensorFlow:
  `tf.numpy_function`, not XLA-compilable; torch: directly); no gradient.
- `global_random_state()`, `restore_global_random_state(state)`: save and
  rewind the backend's global random generator (torch, whose unseeded
  dropout draws from it; no-ops on JAX and TensorFlow, whose dropout draws
  from the seed state a rule passes), so several forward passes of one step
  can see the same dropout masks.
- `fuses_elementwise(x)`: whether ops on the tensor `x` are being traced
  into a compiled graph whose elementwise chains fuse into one loop (JAX:
  under `jax.jit`; TensorFlow: inside a `tf.function`; torch: under
  `torch.compile`); where not, every op is its own pass over memory.
- `eager_direction(position, key, distribution, constants)`: the portable
  random direction of `keras_local.rules.zeroth_order` from a faster
  backend kernel (torch, eager: in place), or `None` where the portable
  `keras.ops` version is the one to run.
- `build_scope(model)`: the context that builds a model's variables where
  Keras's `fit` builds them (TensorFlow: the scope of the model's
  `tf.distribute` strategy; elsewhere a no-op).
- `num_replicas(model)`: how many replicas share each step of `model`
  (TensorFlow: its `tf.distribute` strategy's `num_replicas_in_sync`;
  elsewhere 1).
- `per_replica_loss(loss)`: a compiled loss as the mean over the replica's
  own batch (TensorFlow under a `tf.distribute` strategy with several
  replicas: multiplied back by their number, which Keras's `Loss` divides
  by; elsewhere unchanged), so it adds up with losses written in
  `keras.ops`.
- `replica_mean(value)`: the mean of a tensor over the replicas of a
  `tf.distribute` strategy, inside its step (an all-reduce); elsewhere
  `value`. For a statistic of the whole batch that a rule takes a decision
  on or multiplies its update by, so every replica takes the same.
- `LocalTrainer`: the per-backend `train_step`/`test_step` contract.
- `train_step_memory(model, x, y)`: the memory probe.
"""

import keras

if keras.backend.backend() == "jax":
    # On a one-core process JAX's CPU client must start with two threads,
    # so it is started here; otherwise importing keras_local starts nothing.
    from keras_local.backend.jax.host_call import reserve_callback_thread

    reserve_callback_thread()

from keras_local.backend.common import build_scope
from keras_local.backend.common import eager_direction
from keras_local.backend.common import global_random_state
from keras_local.backend.common import num_replicas
from keras_local.backend.common import per_replica_loss
from keras_local.backend.common import random_normal
from keras_local.backend.common import replica_mean
from keras_local.backend.common import restore_global_random_state
from keras_local.backend.common import random_uniform
from keras_local.backend.common import seed_from_int

BACKEND = keras.backend.backend()
if BACKEND == "jax":
    from keras_local.backend.jax.autodiff import barrier
    from keras_local.backend.jax.compilation import fuses_elementwise
    from keras_local.backend.jax.autodiff import jvp
    from keras_local.backend.jax.host_call import host_call
    from keras_local.backend.jax.autodiff import stop_gradient
    from keras_local.backend.jax.autodiff import value_and_grad
    from keras_local.backend.jax.memory import train_step_memory
    from keras_local.backend.jax.trainer import LocalTrainer
elif BACKEND == "tensorflow":
    from keras_local.backend.tensorflow.autodiff import barrier
    from keras_local.backend.tensorflow.compilation import fuses_elementwise
    from keras_local.backend.tensorflow.autodiff import jvp
    from keras_local.backend.tensorflow.host_call import host_call
    from keras_local.backend.tensorflow.autodiff import stop_gradient
    from keras_local.backend.tensorflow.autodiff import value_and_grad
    from keras_local.backend.tensorflow.memory import train_step_memory
    from keras_local.backend.tensorflow.trainer import LocalTrainer
    from keras_local.backend.tensorflow.trainer import build_scope
    from keras_local.backend.tensorflow.trainer import num_replicas
    from keras_local.backend.tensorflow.trainer import per_replica_loss
    from keras_local.backend.tensorflow.trainer import replica_mean
elif BACKEND == "torch":
    from keras_local.backend.torch.autodiff import barrier
    from keras_local.backend.torch.compilation import fuses_elementwise
    from keras_local.backend.torch.eager_direction import eager_direction
    from keras_local.backend.torch.autodiff import jvp
    from keras_local.backend.torch.host_call import host_call
    from keras_local.backend.torch.random_state import global_random_state
    from keras_local.backend.torch.random_state import (
        restore_global_random_state,
    )
    from keras_local.backend.torch.autodiff import stop_gradient
    from keras_local.backend.torch.autodiff import value_and_grad
    from keras_local.backend.torch.memory import train_step_memory
    from keras_local.backend.torch.trainer import LocalTrainer
else:
    raise ValueError(
        "keras_local supports the `jax`, `tensorflow` and `torch` Keras "
        f"backends. Received: KERAS_BACKEND={BACKEND!r}. Set the "
        "KERAS_BACKEND environment variable to one of those before "
        "importing keras."
    )

__all__ = [
    "BACKEND",
    "LocalTrainer",
    "barrier",
    "build_scope",
    "eager_direction",
    "fuses_elementwise",
    "global_random_state",
    "host_call",
    "jvp",
    "num_replicas",
    "per_replica_loss",
    "random_normal",
    "random_uniform",
    "replica_mean",
    "restore_global_random_state",
    "seed_from_int",
    "stop_gradient",
    "train_step_memory",
    "value_and_grad",
]
