from keras_local.models.forward_forward_model import ForwardForwardModel
from keras_local.models.local_model import LocalModel

__all__ = ["ForwardForwardModel", "LocalModel"]
