"""The registry of table kinds: one entry per way of storing a table's rows.

A kind (`TableLayout.kind`) names how rows are stored: `"low-rank"`
(`LowRankEmbedding` and its reversible twin), `"codebook"`
(`CodebookEmbedding`) or `"dense"` (Keras' `Embedding` and
`ReversibleEmbedding`, float or quantized by Keras). Each is one module of
`keras_lowrank.layers.kinds` defining its `TableKind` (see
`keras_lowrank.layers.table_layout`): its layout parameters and bytes, how
it plans a budget, how it is built from a trained dense table and finished
after the fine-tune, whether it prunes, folds and computes logits.

Surgery, pruning, the planner, `compress()`, folding/export and `inspect` ask
this registry (`kind_of`, `is_table`, `TABLE_KINDS`) instead of checking
classes or attribute names. A new kind is one module in `layers/kinds/` (and
its layer) plus one line in `_REGISTERED` below; `PrunedEmbedding` is not a
kind but a wrapper around any kind's layer (it adds an id map), and is seen
through.

This module must not walk models or train.
"""

import keras

from keras_lowrank.layers.kinds import codebook
from keras_lowrank.layers.kinds import dense
from keras_lowrank.layers.kinds import low_rank
from keras_lowrank.layers.kinds import stored_table
from keras_lowrank.layers.low_rank_reversible_embedding import LowRankReversibleEmbedding
from keras_lowrank.layers.table_layout import TABLE_KINDS
from keras_lowrank.layers.table_layout import TableKind
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import kind_of_layer
from keras_lowrank.layers.table_layout import register_table_kind

__all__ = ["TABLE_KINDS", "TableKind", "is_compressed", "is_reversible", "is_table", "kind_of", "stored_table"]

# The registry entries, in the order the planner lists their recipes.
_REGISTERED = (low_rank.LOW_RANK, codebook.CODEBOOK, dense.DENSE)

for _kind in _REGISTERED:
    if _kind.name not in TABLE_KINDS:
        register_table_kind(_kind)


def kind_of(layer):
    """The `TableKind` of a table layer (through a `PrunedEmbedding`), or `None`."""
    return kind_of_layer(stored_table(layer))


def is_table(layer):
    """Whether `layer` is an embedding table of any registered kind."""
    return kind_of(layer) is not None


def is_reversible(layer):
    """Whether a table layer can compute logits (`reverse=True`): a tied or untied head."""
    return isinstance(stored_table(layer), (keras.layers.ReversibleEmbedding, LowRankReversibleEmbedding))


def is_compressed(layer):
    """Whether a table layer is anything but a float32 dense table of every id."""
    layout = TableLayout.of(layer)
    return layout.kind != "dense" or layout.pruned or layout.storage != "float32"
