"""Pure functions of tensors (`keras.ops`): the math of each rule."""

from keras_local.rules.forward_forward import embed_label
from keras_local.rules.forward_forward import forward_forward_loss
from keras_local.rules.forward_forward import goodness
from keras_local.rules.forward_forward import hardest_wrong_labels
from keras_local.rules.forward_forward import normalize_length
from keras_local.rules.forward_forward import random_wrong_labels
from keras_local.rules.portable_random import portable_randint

__all__ = [
    "embed_label",
    "forward_forward_loss",
    "goodness",
    "hardest_wrong_labels",
    "normalize_length",
    "portable_randint",
    "random_wrong_labels",
]
