"""Training utilities for the fine-tune that follows factorization."""

from keras_lowrank.training.distillation import Distiller
from keras_lowrank.training.distillation import distillation_loss

__all__ = ["Distiller", "distillation_loss"]
