"""The dense kind: every kept row stored whole, by Keras' own layers.

Keras' `Embedding` and `ReversibleEmbedding`, float32 or quantized by Keras
(`"int8"`, `"int4"`: per-row scales, and for int4 zero points and a group
index, in Keras' own layout). The planner proposes it only with the
vocabulary pruned (the "pruned" family: pruning alone); over every row it is
the uncompressed table.
"""

import keras
import numpy as np

from keras_lowrank.layers import storage as storage_lib
from keras_lowrank.layers.kinds import quantize
from keras_lowrank.layers.storage import STORAGES
from keras_lowrank.layers.storage import to_numpy
from keras_lowrank.layers.table_budget import MIN_ROWS
from keras_lowrank.layers.table_layout import TableKind
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import table_bytes

# Keras' quantized `Embedding` stores per-row scales (and, for int4, zero
# points and a group index) whose exact layout is Keras' business: it is
# measured once per (width, mode) on two tiny layers instead of re-derived.
_KERAS_QUANTIZED_COST = {}


def _rows_bytes(rows, output_dim, storage, untied_reverse):
    if storage == "float32":
        return 4 * rows * output_dim * (2 if untied_reverse else 1)
    per_row, fixed = _keras_quantized_cost(output_dim, storage, untied_reverse)
    return rows * per_row + fixed


def _keras_quantized_cost(output_dim, mode, untied_reverse=False):
    key = (int(output_dim), mode, bool(untied_reverse))
    if key not in _KERAS_QUANTIZED_COST:
        sizes = []
        for rows in (2, 3):
            # Keras quantizes an untied reverse table with its own layout.
            layer = (
                keras.layers.ReversibleEmbedding(rows, int(output_dim), tie_weights=False)
                if untied_reverse
                else keras.layers.Embedding(rows, int(output_dim))
            )
            layer.build()
            layer.quantize(mode)
            sizes.append(table_bytes(layer))
        per_row = sizes[1] - sizes[0]
        _KERAS_QUANTIZED_COST[key] = (per_row, sizes[0] - 2 * per_row)
    return _KERAS_QUANTIZED_COST[key]


def _layout_of(layer):
    return TableLayout(
        int(layer.input_dim),
        int(layer.output_dim),
        storage=getattr(layer, "quantization_mode", None) or "float32",
        untied_reverse=getattr(layer, "tie_weights", True) is False,
    )


def _plan(budget):
    if not budget.prune:
        return
    for storage in budget.storages_of(DENSE):
        for selection in budget.selections:
            rows, remap = budget.pruned_rows(storage, selection)
            # Counts that keep the first ids anyway plan nothing new.
            if rows >= MIN_ROWS and (selection == "first" or remap):
                yield budget.layout(rows=rows, storage=storage, remap=remap), None, selection


def _smallest(budget):
    # Pruning keeps at least MIN_ROWS rows and fewer than the table has.
    if not budget.prune or budget.input_dim <= MIN_ROWS:
        return []
    return [budget.layout(rows=MIN_ROWS, storage=storage) for storage in budget.storages_of(DENSE)]


def _decode(layer):
    if getattr(layer, "quantization_mode", None) is None:
        return to_numpy(keras.ops.cast(layer.embeddings, "float32"))
    rows, chunk = int(layer.input_dim), 65536
    parts = [
        to_numpy(layer(np.arange(start, min(start + chunk, rows), dtype="int32")))
        for start in range(0, rows, chunk)
    ]
    return np.concatenate(parts, axis=0)


DENSE = TableKind(
    name="dense",
    layer_types=(keras.layers.Embedding,),
    parameters=(),
    storages=STORAGES,
    rows_bytes=_rows_bytes,
    params=lambda layout: (2 if layout.untied_reverse else 1) * layout.rows * layout.output_dim,
    describe=lambda layout: f"dense {layout.storage}",
    layout_of=_layout_of,
    plan=_plan,
    smallest=_smallest,
    stored_rows=lambda layout, rows, row_weights: storage_lib.fake_quantize(rows, layout.storage, axis=1),
    family=lambda layout: "pruned",
    finalize=quantize,
    decode=_decode,
    prunable=True,
    reversible=True,
)
