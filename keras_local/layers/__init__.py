"""Building-block layers."""

from keras_local.layers.feedback_alignment import FeedbackAlignment
from keras_local.layers.learnable_bias import LearnableBias

__all__ = ["FeedbackAlignment", "LearnableBias"]
