"""Keras layers of keras_lowrank."""

from keras_lowrank.layers.codebook_embedding import CodebookEmbedding
from keras_lowrank.layers.low_rank_embedding import LowRankEmbedding
from keras_lowrank.layers.low_rank_reversible_embedding import (
    LowRankReversibleEmbedding,
)
from keras_lowrank.layers.pruned_embedding import PrunedEmbedding

# Registers the table kinds: every layout and byte count needs them.
from keras_lowrank.layers import table_kinds  # noqa: E402,F401  isort: skip

__all__ = ["CodebookEmbedding", "LowRankEmbedding", "LowRankReversibleEmbedding", "PrunedEmbedding"]
