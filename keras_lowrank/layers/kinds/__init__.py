"""The table kinds, one module each.

Each module defines one `keras_lowrank.layers.table_layout.TableKind`: the
kind's layout parameters and byte arithmetic, how it plans a byte budget,
how it is built from a trained dense table and finished after the
fine-tune. `keras_lowrank.layers.table_kinds` registers them; nothing else
imports them.
"""

from keras_lowrank.layers.pruned_embedding import PrunedEmbedding


def stored_table(layer):
    """The layer storing the rows: the wrapped one of a `PrunedEmbedding`."""
    return layer.embedding if isinstance(layer, PrunedEmbedding) else layer


def quantize(layer, layout):
    """A kind's `finalize` that quantizes the stored layer into `layout.storage`."""
    if layout.storage != "float32":
        stored_table(layer).quantize(layout.storage)
