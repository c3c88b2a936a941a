"""Pure functions of tensors (`keras.ops`): the math of each rule."""

from keras_local.rules.forward_forward import embed_label
from keras_local.rules.forward_forward import forward_forward_loss
from keras_local.rules.forward_forward import goodness
from keras_local.rules.forward_forward import hardest_wrong_labels
from keras_local.rules.forward_forward import normalize_length
from keras_local.rules.forward_forward import random_wrong_labels
from keras_local.rules.portable_random import portable_randint
