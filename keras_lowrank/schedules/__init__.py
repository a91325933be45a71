"""Learning-rate schedules for the fine-tune that follows factorization."""

from keras_lowrank.schedules.cyclical import CyclicalLearningRate
from keras_lowrank.schedules.cyclical import CyclicallyAnnealedLearningRate
from keras_lowrank.schedules.plotting import plot_schedules

__all__ = [
    "CyclicalLearningRate",
    "CyclicallyAnnealedLearningRate",
    "plot_schedules",
]
