"""The low-rank kind: rows stored as two factors `A[rows, rank] @ B[rank, d]`.

Stored by `LowRankEmbedding` and its reversible twin. The factors are kept
in float32, or `A` as int8/int4 codes with one float32 scale per row and `B`
as int8 with one float32 scale per output column. Planned over every row at
the largest rank the budget buys, and with the vocabulary pruned at several
larger ranks (each with the most rows it leaves room for); ordered within
the kind by the token-weighted reconstruction error of the stored table.
"""

import keras
import numpy as np

from keras_lowrank import decomposition
from keras_lowrank.layers import storage as storage_lib
from keras_lowrank.layers.kinds import quantize
from keras_lowrank.layers.low_rank_embedding import LowRankEmbedding
from keras_lowrank.layers.low_rank_reversible_embedding import LowRankReversibleEmbedding
from keras_lowrank.layers.storage import STORAGES
from keras_lowrank.layers.storage import to_numpy
from keras_lowrank.layers.table_budget import MIN_ROWS
from keras_lowrank.layers.table_layout import REQUIRED
from keras_lowrank.layers.table_layout import TableKind
from keras_lowrank.layers.table_layout import check_positive_parameter

# Ranks of the pruned low-rank family, as multiples of the rank the whole
# vocabulary affords: from "few rows dropped" to "a quarter of the rows".
PRUNED_RANK_FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0)


def factor_bytes(rows, output_dim, rank, storage):
    """Bytes of one table's factors `A[rows, rank]` and `B[rank, output_dim]`."""
    if storage == "float32":
        return storage_lib.vector_bytes(rows + output_dim, rank, "float32")
    # `A`: one code vector per row; `B`: int8, one vector per output column.
    return storage_lib.vector_bytes(rows, rank, storage) + storage_lib.vector_bytes(output_dim, rank, "int8")


def max_rank_for_bytes(rows, output_dim, budget, storage, untied_reverse=False):
    """Largest useful rank of `rows x output_dim` factors within `budget` bytes (0: none).

    With `untied_reverse`, the reverse table's factors of the same rank are
    paid from the same budget.
    """
    cap = decomposition.max_useful_rank(rows, output_dim)
    tables = 2 if untied_reverse else 1
    best = 0
    for rank in range(1, cap + 1):
        if tables * factor_bytes(rows, output_dim, rank, storage) > budget:
            break
        best = rank
    return best


def _rows_bytes(rows, output_dim, storage, untied_reverse, *, rank):
    # An untied LowRankReversibleEmbedding quantizes its reverse factors
    # exactly as its forward ones.
    return (2 if untied_reverse else 1) * factor_bytes(rows, output_dim, rank, storage)


def _check(layout):
    check_positive_parameter("rank", layout.rank)


def _plan(budget):
    V, d = budget.input_dim, budget.output_dim
    for storage in budget.storages_of(LOW_RANK):
        full_rank = max_rank_for_bytes(V, d, budget.budget_bytes, storage, untied_reverse=budget.untied_reverse)
        if full_rank >= 1:
            for weighting in _weightings(V, d):
                yield budget.layout(rank=full_rank, storage=storage), weighting, None
        if not budget.prune:
            continue
        for selection in budget.selections:
            for factor in PRUNED_RANK_FACTORS:
                rank = min(max(2, int(round(max(full_rank, 1) * factor))), d - 1)
                rows, remap = budget.pruned_rows(storage, selection, rank=rank)
                if rows < MIN_ROWS:
                    continue
                rank = min(rank, decomposition.max_useful_rank(rows, d))
                if rank < 1:
                    continue
                if selection == "counts" and not remap:
                    continue  # the same rows as "first": already planned
                for weighting in _weightings(rows, d):
                    yield budget.layout(rows=rows, rank=rank, storage=storage, remap=remap), weighting, selection


def _weightings(rows, output_dim):
    # A weighted fit needs at least as many rows as columns.
    return ("none", "frequency") if rows >= output_dim else ("none",)


def _smallest(budget):
    return [budget.layout(rank=1, storage=storage) for storage in budget.storages_of(LOW_RANK)]


def _stored_rows(layout, rows, row_weights):
    factors = decomposition.factorize_table(rows, layout.rank, row_weights=row_weights)
    lookup, projection = np.asarray(factors.lookup, np.float64), np.asarray(factors.projection, np.float64)
    if layout.storage != "float32":
        lookup = storage_lib.fake_quantize(lookup, layout.storage, axis=1)
        projection = storage_lib.fake_quantize(projection, "int8", axis=0)
    return lookup @ projection


def _build(layer, layout, row_weights=None, seed=0):
    factorized = LowRankReversibleEmbedding if isinstance(layer, keras.layers.ReversibleEmbedding) else LowRankEmbedding
    return factorized.from_embedding(layer, rank=layout.rank, row_weights=row_weights)


LOW_RANK = TableKind(
    name="low-rank",
    layer_types=(LowRankEmbedding,),
    parameters=(("rank", REQUIRED),),
    storages=STORAGES,
    rows_bytes=_rows_bytes,
    params=lambda layout: (2 if layout.untied_reverse else 1) * layout.rank * (layout.rows + layout.output_dim),
    describe=lambda layout: f"rank {layout.rank} {layout.storage}",
    check=_check,
    useful=lambda layout: 1 <= layout.rank <= decomposition.max_useful_rank(layout.rows, layout.output_dim),
    plan=_plan,
    smallest=_smallest,
    stored_rows=_stored_rows,
    build=_build,
    finalize=quantize,
    decode=lambda layer: to_numpy(keras.ops.cast(layer.embeddings, "float32")),
    factorized=True,
    prunable=True,
    foldable=True,
    reversible=True,
)
