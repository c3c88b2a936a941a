"""The memory probe on JAX: XLA's compiled memory analysis."""

import jax

from keras_local.backend.common import MemoryReport
from keras_local.backend.common import build_for_step


def train_step_memory(model, x, y, sample_weight=None):
    """Peak temporary memory of one compiled train step of a compiled model.

    The step is compiled as Keras's JAX trainer compiles it: `jax.jit` of
    `model.train_step` with the state donated (`donate_argnums=0`), so XLA
    cannot hide temporaries in the output buffers. Nothing is trained. The
    figure is deterministic: compare a rule with plain backprop on the
    same network and batch.

    Args:
        model: a compiled `keras.Model` (plain or a `keras_local` rule).
        x: a batch of inputs (only its shapes and dtypes are used).
        y: the batch's targets.
        sample_weight: optional per-sample weights. Defaults to `None`.

    Returns:
        A `MemoryReport`: `bytes` (XLA's `temp_size_in_bytes`),
        `description` and `backend`. On TensorFlow `bytes` is `None`; on
        PyTorch it is the peak of one eager step's tensors.

    Example:

    ```python
    blocks = [keras.layers.Dense(1024, activation="relu") for _ in range(4)]
    model = keras_local.TargetProjectionModel(
        blocks + [keras.layers.Dense(10)], num_classes=10, rule="drtp")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = np.zeros((1024, 784), "float32"), np.zeros((1024,), "int32")
    report = keras_local.backend.train_step_memory(model, x, y)
    print(report.bytes, report.description)
    ```
    """
    build_for_step(model, x, y, sample_weight)
    state = model._get_jax_state(
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=True,
        metrics_variables=True,
    )
    data = (x, y) if sample_weight is None else (x, y, sample_weight)
    data = jax.tree_util.tree_map(
        lambda t: jax.ShapeDtypeStruct(t.shape, t.dtype), data
    )
    step = jax.jit(model.train_step, donate_argnums=0)
    analysis = step.lower(state, data).compile().memory_analysis()
    return MemoryReport(
        analysis.temp_size_in_bytes,
        "XLA temp_size_in_bytes of jax.jit(train_step, donate_argnums=0)",
        "jax",
    )
