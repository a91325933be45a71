"""The table seam: one description (`TableLayout`) and one registry of kinds.

Byte counts are checked against sums written out by hand from what each
variable stores, and against `table_bytes` of the built layer; kinds against
the layer classes that store them.
"""

import numpy as np
import pytest

import keras

from keras_lowrank.compression import prune_vocabulary
from keras_lowrank.layers import CodebookEmbedding
from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.layers import LowRankReversibleEmbedding
from keras_lowrank.layers import PrunedEmbedding
from keras_lowrank.layers import table_kinds
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import max_rows_for_bytes
from keras_lowrank.layers.table_layout import table_bytes

pytestmark = pytest.mark.backend_agnostic


def _codebook(V=50, d=16, groups=4, codes=16, storage="int8"):
    table = np.random.default_rng(0).normal(size=(V, d)).astype("float32")
    return CodebookEmbedding.from_embedding(table, groups, codes, codebook_dtype=storage, iterations=3)


@pytest.mark.parametrize("groups, codes, storage", [(4, 16, "int8"), (5, 16, "float32"), (8, 256, "int8"),
                                                    (2, 200, "float32")])
def test_codebook_layout_counts_what_the_frozen_layer_stores(groups, codes, storage):
    V, d = 300, 40
    layer = _codebook(V, d, groups, codes, storage)
    layout = TableLayout.of(layer)
    bits = 4 if codes <= 16 else 8
    by_hand = V * -(-groups * bits // 8) + (
        4 * codes * d if storage == "float32" else codes * d + 4 * groups
    )
    assert layout.kind == "codebook"
    assert (layout.groups, layout.codes, layout.storage) == (groups, codes, storage)
    assert layout.stored_bytes() == by_hand == table_bytes(layer)


def test_pruned_codebook_layout_adds_the_remap_table():
    inner = _codebook(V=40)
    wrapped = PrunedEmbedding(300, inner, remap=True)
    wrapped.build()
    layout = TableLayout.of(wrapped)
    assert (layout.input_dim, layout.rows, layout.remap, layout.kind) == (300, 40, True, "codebook")
    assert layout.stored_bytes() == table_bytes(inner) + 300 * 2  # int16 ids
    assert layout.stored_bytes() == table_bytes(wrapped)


@pytest.mark.parametrize("groups, codes, storage, budget", [(4, 16, "int8", 15_000), (8, 256, "float32", 60_000)])
def test_max_rows_for_bytes_of_codebooks_is_the_last_fitting_count(groups, codes, storage, budget):
    d = 32
    rows = max_rows_for_bytes(d, budget, storage, groups=groups, codes=codes, input_dim=5_000)

    def cost(r):
        return TableLayout(5_000, d, rows=r, groups=groups, codes=codes, storage=storage, remap=True).stored_bytes()

    assert rows >= 1 and cost(rows) <= budget < cost(rows + 1)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(rank=4, groups=4, codes=16), "not both"),
        (dict(groups=4), "together"),
        (dict(groups=5, codes=16), "divide"),
        (dict(groups=4, codes=300), "codes"),
        (dict(groups=4, codes=16, storage="int4"), "storage"),
        (dict(groups=4, codes=16, untied_reverse=True), "reversible"),
    ],
)
def test_bad_codebook_layouts_are_refused_by_name(fields, message):
    with pytest.raises(ValueError, match=message):
        TableLayout(100, 16, **fields)


def test_every_table_layer_has_its_kind():
    dense = keras.layers.Embedding(30, 8)
    dense.build()
    reversible = keras.layers.ReversibleEmbedding(30, 8)
    reversible.build()
    low_rank = LowRankEmbedding(30, 8, rank=2)
    low_rank.build()
    twin = LowRankReversibleEmbedding(30, 8, rank=2)
    twin.build()
    codebook = _codebook(V=30, d=8, groups=2)
    assert table_kinds.kind_of(dense).name == "dense"
    assert table_kinds.kind_of(reversible).name == "dense"
    assert table_kinds.kind_of(low_rank).name == "low-rank"
    assert table_kinds.kind_of(twin).name == "low-rank"
    assert table_kinds.kind_of(codebook).name == "codebook"
    assert table_kinds.kind_of(keras.layers.Dense(3)) is None
    wrapped = PrunedEmbedding(100, low_rank)
    assert table_kinds.kind_of(wrapped).name == "low-rank" and table_kinds.stored_table(wrapped) is low_rank
    assert [table_kinds.is_reversible(x) for x in (dense, reversible, low_rank, twin, codebook)] == [
        False, True, False, True, False]
    assert not table_kinds.is_compressed(dense)
    assert all(table_kinds.is_compressed(x) for x in (low_rank, codebook, wrapped))
    # Each kind's layout is the one the layer reports.
    assert TableLayout.of(low_rank) == TableLayout(30, 8, rank=2)
    assert TableLayout.of(dense) == TableLayout(30, 8)


def test_registered_builders_make_the_planned_layout():
    dense = keras.layers.Embedding(120, 16, mask_zero=True, name="words")
    dense.build()
    for layout in (TableLayout(120, 16, rank=3, storage="int8"),
                   TableLayout(120, 16, groups=4, codes=16, storage="int8")):
        kind = table_kinds.TABLE_KINDS[layout.kind]
        built = kind.build(dense, layout, row_weights=np.arange(120.0) + 1, seed=0)
        assert built.name == "words" and built.mask_zero
        kind.finalize(built, layout)
        assert TableLayout.of(built) == layout
        assert table_bytes(built) == layout.stored_bytes()


def test_decoded_rows_of_each_kind_are_what_the_layer_answers():
    ids = np.arange(30, dtype="int32")
    low_rank = LowRankEmbedding(30, 8, rank=2)
    low_rank.build()
    codebook = _codebook(V=30, d=8, groups=2)
    dense = keras.layers.Embedding(30, 8)
    dense.build()
    dense.quantize("int8")
    for layer in (low_rank, codebook, dense):
        decoded = table_kinds.kind_of(layer).decoded_table(layer)
        np.testing.assert_allclose(decoded, keras.ops.convert_to_numpy(layer(ids)), atol=1e-6)


def test_prune_vocabulary_refuses_a_named_codebook_table():
    model = keras.Sequential([keras.Input((4,), dtype="int32"), _codebook(V=50, d=16), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="codebook table"):
        prune_vocabulary(model, 20, layer_names=[model.layers[0].name])
