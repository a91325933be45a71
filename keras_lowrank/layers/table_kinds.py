"""The registry of table kinds: one entry per way of storing a table's rows.

A kind (`TableLayout.kind`) names how rows are stored: `"dense"` (Keras'
`Embedding` and `ReversibleEmbedding`, float or quantized by Keras),
`"low-rank"` (`LowRankEmbedding` and its reversible twin) or `"codebook"`
(`CodebookEmbedding`). Its `TableKind` entry says which layers store it and
what the rest of the package may do with them: build one from a trained
dense table, put its stored form in place after the fine-tune (quantize,
freeze codes), prune its rows, fold it at export, read its decoded rows.

Surgery, pruning, the planner, `compress()`, folding/export and `inspect` ask
this registry (`kind_of`, `is_table`, `TABLE_KINDS`) instead of checking
classes or attribute names. A new kind is one layer module plus one
`register_table_kind` call here; `PrunedEmbedding` is not a kind but a
wrapper around any kind's layer (it adds an id map), and is seen through.

This module must not walk models or train.
"""

import dataclasses

import keras
import numpy as np

from keras_lowrank.layers.codebook_embedding import CodebookEmbedding
from keras_lowrank.layers.low_rank_embedding import LowRankEmbedding
from keras_lowrank.layers.low_rank_reversible_embedding import LowRankReversibleEmbedding
from keras_lowrank.layers.pruned_embedding import PrunedEmbedding
from keras_lowrank.layers.storage import to_numpy
from keras_lowrank.layers.table_layout import TableLayout


@dataclasses.dataclass(frozen=True)
class TableKind:
    """What the package may do with the tables of one kind.

    Args:
        name: the kind, as `TableLayout.kind` says it.
        layer_types: the layer classes storing this kind (checked in
            registration order, so a kind whose layers subclass another
            kind's comes first).
        build: `(dense_layer, layout, row_weights, seed) -> layer`: the
            trainable replacement of a trained dense table for `layout`
            (same name, `mask_zero` and dtype policy), or `None` when the
            kind is not built from a dense table (dense itself).
        finalize: `(layer, layout) -> None`: turns the fine-tuned layer
            into what `layout` stores (quantization, frozen codes).
        factorized: whether rows are computed from stored parts (no
            `input_dim x output_dim` array exists once stored).
        prunable: whether `prune_vocabulary` may subset its rows.
        foldable: whether export folds it into its consumer
            (`keras_lowrank.export.fold_projections`: low rank's `B`).
        reversible: whether it can compute logits (`reverse=True`, tied LM
            heads): a kind that cannot is never planned for such a table.
    """

    name: str
    layer_types: tuple
    build: object
    finalize: object
    factorized: bool
    prunable: bool
    foldable: bool
    reversible: bool

    def decoded_table(self, layer):
        """The `(input_dim, output_dim)` float32 rows `layer` answers (for inspection)."""
        return np.asarray(_decoders[self.name](layer), dtype=np.float32)


TABLE_KINDS = {}
_decoders = {}


def register_table_kind(kind, decode):
    """Adds `kind` (a `TableKind`) to the registry with its row decoder."""
    if kind.name in TABLE_KINDS:
        raise ValueError(f"Table kind {kind.name!r} is already registered")
    TABLE_KINDS[kind.name] = kind
    _decoders[kind.name] = decode


def stored_table(layer):
    """The layer storing the rows: the wrapped one of a `PrunedEmbedding`."""
    return layer.embedding if isinstance(layer, PrunedEmbedding) else layer


def kind_of(layer):
    """The `TableKind` of a table layer (through a `PrunedEmbedding`), or `None`."""
    inner = stored_table(layer)
    for kind in TABLE_KINDS.values():
        if isinstance(inner, kind.layer_types):
            return kind
    return None


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


def _build_low_rank(layer, layout, row_weights=None, seed=0):
    factorized = LowRankReversibleEmbedding if isinstance(layer, keras.layers.ReversibleEmbedding) else LowRankEmbedding
    return factorized.from_embedding(layer, rank=layout.rank, row_weights=row_weights)


# Lloyd iterations of the k-means that starts a codebook table: its codes
# are learned during the fine-tune, so k-means only initializes them, and
# its first iterations do most of the work.
CODEBOOK_INIT_ITERATIONS = 8


def _build_codebook(layer, layout, row_weights=None, seed=0):
    # The training form: codes are learned during the fine-tune (straight
    # through the nearest codeword), then frozen by `finalize`.
    return CodebookEmbedding.from_embedding(
        layer, layout.groups, layout.codes, row_weights=row_weights, seed=seed, freeze=False,
        codebook_dtype=layout.storage, iterations=CODEBOOK_INIT_ITERATIONS,
        exact_rows=layout.exact_rows, exact_remap=layout.exact_remap,
    )


def _quantize(layer, layout):
    if layout.storage != "float32":
        stored_table(layer).quantize(layout.storage)


def _freeze(layer, layout):
    stored_table(layer).freeze_codes()


def _decode_dense(layer):
    if getattr(layer, "quantization_mode", None) is None:
        return to_numpy(keras.ops.cast(layer.embeddings, "float32"))
    rows, chunk = int(layer.input_dim), 65536
    parts = [
        to_numpy(layer(np.arange(start, min(start + chunk, rows), dtype="int32")))
        for start in range(0, rows, chunk)
    ]
    return np.concatenate(parts, axis=0)


register_table_kind(
    TableKind("low-rank", (LowRankEmbedding,), build=_build_low_rank, finalize=_quantize,
              factorized=True, prunable=True, foldable=True, reversible=True),
    decode=lambda layer: to_numpy(keras.ops.cast(layer.embeddings, "float32")),
)
register_table_kind(
    TableKind("codebook", (CodebookEmbedding,), build=_build_codebook, finalize=_freeze,
              factorized=True, prunable=False, foldable=False, reversible=False),
    decode=lambda layer: layer.decoded_table(),
)
register_table_kind(
    TableKind("dense", (keras.layers.Embedding,), build=None, finalize=_quantize,
              factorized=False, prunable=True, foldable=False, reversible=True),
    decode=_decode_dense,
)
