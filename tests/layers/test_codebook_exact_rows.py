"""Exact rows of a `CodebookEmbedding`: some ids skip the codebooks.

References are independent of the layer: the documented selection rule
(weighted squared error through a first k-means, then the codebooks fitted
again without those rows) replayed with `kmeans.product_quantize` and numpy
gathers, int8 rows quantized by hand (`round(row * 127 / max|row|)`), the
VQ losses written out over the coded entries, and byte counts by hand.
"""

import numpy as np
import pytest

import keras

from keras_lowrank.compression import table_bytes
from keras_lowrank.decomposition import kmeans
from keras_lowrank.layers import CodebookEmbedding
from keras_lowrank.layers import table_kinds
from keras_lowrank.layers.table_layout import TableLayout

pytestmark = pytest.mark.backend_agnostic

V, D, GROUPS, CODES, EXACT = 120, 8, 4, 8, 10


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _table(seed=0):
    return np.random.default_rng(seed).normal(size=(V, D)).astype("float32")


def _weights():
    return np.random.default_rng(1).integers(1, 50, size=V).astype("float64")


def _decode(result):
    return np.concatenate([result.codebooks[g][result.codes[:, g]] for g in range(GROUPS)], axis=1)


def _int8_rows(rows):
    scale = 127.0 / np.max(np.abs(rows), axis=1, keepdims=True)
    return np.round(rows * scale) / scale


def _reference(table, weights, remap):
    """What the documented rule answers for every id, and the exact ids."""
    first = kmeans.product_quantize(table, GROUPS, CODES, row_weights=weights, iterations=3, seed=0)
    if remap:
        error = weights * np.sum((table.astype(np.float64) - _decode(first)) ** 2, axis=1)
        exact = np.sort(np.argsort(-error, kind="stable")[:EXACT])
    else:
        exact = np.arange(EXACT)
    served = weights.copy()
    served[exact] = 0.0
    refit = kmeans.product_quantize(table, GROUPS, CODES, row_weights=served, iterations=3, seed=0)
    rows = _decode(refit)
    rows[exact] = _int8_rows(table[exact])
    return rows, exact


def _layer(remap, freeze=True, codebook_dtype="float32", **kwargs):
    return CodebookEmbedding.from_embedding(
        _table(), GROUPS, CODES, row_weights=_weights(), iterations=3, seed=0, exact_rows=EXACT,
        exact_remap=remap, freeze=freeze, codebook_dtype=codebook_dtype, **kwargs,
    )


@pytest.mark.parametrize("remap", [False, True])
def test_frozen_rows_follow_the_documented_rule(remap):
    layer = _layer(remap)
    expected, exact = _reference(_table(), _weights(), remap)
    np.testing.assert_array_equal(layer.exact_ids(), exact)
    ids = np.arange(V).reshape(12, 10)
    np.testing.assert_allclose(_numpy(layer(ids)).reshape(V, D), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.decoded_table(), expected, rtol=1e-6, atol=1e-6)
    if remap:
        # The most frequent, worst-served rows are not simply the first ids.
        assert not np.array_equal(exact, np.arange(EXACT))


@pytest.mark.parametrize("remap", [False, True])
def test_training_form_answers_exact_ids_with_their_own_rows(remap):
    layer = _layer(remap, freeze=False)
    exact = layer.exact_ids()
    coded = np.setdiff1d(np.arange(V), exact)
    out = _numpy(layer(np.arange(V)))
    np.testing.assert_array_equal(out[exact], _table()[exact])
    codebooks = _numpy(layer.codebooks)
    nearest = kmeans.assign_codes(_table(), codebooks)
    decoded = np.concatenate([codebooks[g][nearest[:, g]] for g in range(GROUPS)], axis=1)
    np.testing.assert_allclose(out[coded], decoded[coded], atol=1e-6)
    # Freezing quantizes the exact rows to int8 and keeps the codes.
    layer.freeze_codes()
    np.testing.assert_allclose(_numpy(layer(exact)), _int8_rows(_table()[exact]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_numpy(layer(coded)), decoded[coded], atol=1e-6)


def test_losses_count_only_the_coded_entries():
    layer = _layer(True, freeze=False, beta=0.5)
    exact = layer.exact_ids()
    coded = np.setdiff1d(np.arange(V), exact)
    ids = np.concatenate([exact[:4], coded[:4]])
    out = _numpy(layer(ids))
    rows = _table()[ids]
    squared = np.sum((rows[4:] - out[4:]) ** 2)
    np.testing.assert_allclose(_numpy(layer.losses[-1]), 1.5 * squared / (len(ids) * D), rtol=1e-5)
    layer(exact[:3])
    np.testing.assert_allclose(_numpy(layer.losses[-1]), 0.0, atol=1e-12)


def test_exact_rows_train_like_dense_rows_and_leave_codebooks_alone():
    layer = _layer(True, freeze=False)
    exact = layer.exact_ids()
    model = keras.Sequential([keras.Input((2,), dtype="int32"), layer, keras.layers.Flatten(),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    codebooks, table = _numpy(layer.codebooks), _numpy(layer.embeddings)
    model.fit(exact[:4].reshape(2, 2), np.full((2, 1), 3.0), epochs=1, batch_size=2, verbose=0)
    assert not np.allclose(_numpy(layer.embeddings)[exact[:4]], table[exact[:4]])
    np.testing.assert_array_equal(_numpy(layer.embeddings)[exact[4:]], table[exact[4:]])
    # Only exact ids were looked up: no loss or output reached the codebooks.
    np.testing.assert_array_equal(_numpy(layer.codebooks), codebooks)


@pytest.mark.parametrize("remap, codebook_dtype", [(False, "float32"), (True, "int8")])
def test_bytes_by_hand(remap, codebook_dtype):
    layer = _layer(remap, codebook_dtype=codebook_dtype)
    codes = V * GROUPS // 2  # 4-bit codes, two per byte
    codebooks = 4 * CODES * D if codebook_dtype == "float32" else CODES * D + 4 * GROUPS
    exact = EXACT * D + 4 * EXACT  # int8 rows and a float32 scale each
    id_map = 2 * V if remap else 0  # int16
    layout = TableLayout.of(layer)
    assert (layout.kind, layout.exact_rows, layout.exact_remap) == ("codebook", EXACT, remap)
    assert table_bytes(layer) == layout.stored_bytes() == codes + codebooks + exact + id_map
    assert "10 exact int8 rows" in layout.describe()


@pytest.mark.parametrize("freeze", [True, False])
def test_saved_and_loaded(tmp_path, freeze):
    layer = _layer(True, freeze=freeze, mask_zero=True, name="tokens")
    inputs = keras.Input((None,), dtype="int32")
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(layer(inputs)))
    ids = np.random.default_rng(3).integers(0, V, size=(6, 7))
    expected = _numpy(model(ids))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras").get_layer("tokens")
    assert (loaded.exact_rows, loaded.exact_remap, loaded.codes_frozen) == (EXACT, True, freeze)
    np.testing.assert_array_equal(loaded.exact_ids(), layer.exact_ids())
    np.testing.assert_array_equal(_numpy(keras.saving.load_model(tmp_path / "m.keras")(ids)), expected)


def test_registered_builder_makes_the_planned_exact_layout():
    dense = keras.layers.Embedding(V, D, name="words")
    dense.build()
    layout = TableLayout(V, D, groups=GROUPS, codes=CODES, storage="int8", exact_rows=EXACT, exact_remap=True)
    kind = table_kinds.TABLE_KINDS["codebook"]
    built = kind.build(dense, layout, row_weights=_weights(), seed=0)
    kind.finalize(built, layout)
    assert TableLayout.of(built) == layout
    assert table_bytes(built) == layout.stored_bytes()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"exact_rows": V}, f"exact_rows={V}"),
        ({"exact_rows": -1}, "exact_rows=-1"),
        ({"exact_rows": True}, "exact_rows=True"),
        ({"exact_remap": "yes"}, "exact_remap='yes'"),
    ],
)
def test_argument_errors(change, message):
    with pytest.raises(ValueError, match=message):
        CodebookEmbedding(V, D, groups=GROUPS, codes=CODES, **change)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(rank=4, exact_rows=3), "A low-rank table takes `rank`, received: exact_rows=3"),
        (dict(groups=4, codes=16, exact_remap=True), "exact_rows=0"),
        (dict(groups=4, codes=16, exact_rows=100), "exact_rows=100"),
    ],
)
def test_bad_exact_layouts_are_refused_by_name(fields, message):
    with pytest.raises(ValueError, match=message):
        TableLayout(100, 16, **fields)
