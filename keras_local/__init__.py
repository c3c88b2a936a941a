"""keras_local: train Keras 3 models without end-to-end backpropagation."""

from keras_local import backend
from keras_local import callbacks
from keras_local import datasets
from keras_local import layers
from keras_local import models
from keras_local import rules
from keras_local.models.checkpointed_backprop_model import CheckpointedBackpropModel
from keras_local.models.direct_feedback_alignment_model import DirectFeedbackAlignmentModel
from keras_local.models.forward_forward_model import ForwardForwardModel
from keras_local.models.forward_gnn_link_model import ForwardGNNLinkModel
from keras_local.models.forward_gnn_model import ForwardGNNModel
from keras_local.models.gnn_model import GNNModel
from keras_local.models.local_loss_model import LocalLossModel
from keras_local.models.local_model import LocalModel
from keras_local.models.physical_forward_forward_model import PhysicalForwardForwardModel
from keras_local.models.single_forward_model import SingleForwardModel
from keras_local.models.target_projection_model import TargetProjectionModel
from keras_local.models.zeroth_order_model import ZerothOrderModel
from keras_local.version import __version__

__all__ = [
    "CheckpointedBackpropModel",
    "DirectFeedbackAlignmentModel",
    "ForwardForwardModel",
    "ForwardGNNLinkModel",
    "ForwardGNNModel",
    "GNNModel",
    "LocalLossModel",
    "LocalModel",
    "PhysicalForwardForwardModel",
    "SingleForwardModel",
    "TargetProjectionModel",
    "ZerothOrderModel",
    "__version__",
    "backend",
    "callbacks",
    "datasets",
    "layers",
    "models",
    "rules",
]
