"""Training utilities for the fine-tune that follows factorization."""

from keras_lowrank.training.distillation import Distiller
from keras_lowrank.training.distillation import distillation_loss
from keras_lowrank.training.lazy_adam import LazyAdam

__all__ = ["Distiller", "LazyAdam", "distillation_loss"]
