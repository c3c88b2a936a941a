"""The one export decorator: registers a class for `.keras` serialization."""

import keras

PACKAGE = "keras_local"


def keras_local_export(cls):
    """Registers `cls` as serializable under the permanent package name."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
