"""The memory probe on TensorFlow: not available."""

from keras_local.backend.common import MemoryReport


def train_step_memory(model, x, y, sample_weight=None):
    """TensorFlow exposes no memory analysis of a compiled XLA program: a
    `MemoryReport` with `bytes=None` (arguments as on JAX)."""
    return MemoryReport(
        None,
        "not available on TensorFlow: tf.function exposes no compiled "
        "memory analysis; use KERAS_BACKEND=jax (XLA) or torch",
        "tensorflow",
    )
