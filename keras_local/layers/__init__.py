"""Building-block layers."""

from keras_local.layers.black_box import BlackBox
from keras_local.layers.feedback_alignment import FeedbackAlignment
from keras_local.layers.gat_conv import GATConv
from keras_local.layers.gcn_conv import GCNConv
from keras_local.layers.locally_connected2d import LocallyConnected2D
from keras_local.layers.physical_system_twin import PhysicalSystemTwin
from keras_local.layers.resizing_conv2d import ResizingConv2D
from keras_local.layers.sage_conv import SAGEConv
from keras_local.layers.simulated_physical_system import SimulatedPhysicalSystem

__all__ = [
    "BlackBox",
    "FeedbackAlignment",
    "GATConv",
    "GCNConv",
    "LocallyConnected2D",
    "PhysicalSystemTwin",
    "ResizingConv2D",
    "SAGEConv",
    "SimulatedPhysicalSystem",
]
