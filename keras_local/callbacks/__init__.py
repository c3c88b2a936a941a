"""Callbacks for training with local learning rules."""

from keras_local.callbacks.epoch_timer import EpochTimer

__all__ = ["EpochTimer"]
