"""Keras layers of keras_lowrank."""

from keras_lowrank.layers.low_rank_embedding import LowRankEmbedding

__all__ = ["LowRankEmbedding"]
