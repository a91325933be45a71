"""Rotated codes of a `CodebookEmbedding` (optimized product quantization).

References are independent of the layer: eigenvalue allocation worked out
by hand on a table with known variances, the documented rule replayed with
numpy (`kmeans.product_quantize` of `table @ rotation`, decoded, turned back
by `rotation^T`, exact rows kept unrotated as int8 by hand), an int8
rotation quantized per column by hand, and byte counts by hand.
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

V, D, GROUPS, CODES, EXACT = 200, 8, 4, 8, 10


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _table(seed=0):
    """Rows whose variance sits in a few directions, none of them a column."""
    rng = np.random.default_rng(seed)
    spread = rng.normal(size=(V, D)) * np.geomspace(4.0, 0.05, D)
    turn = np.linalg.qr(rng.normal(size=(D, D)))[0]
    return (spread @ turn.T).astype("float32")


def _weights():
    return np.random.default_rng(1).integers(1, 50, size=V).astype("float64")


def _int8(values, axis):
    scale = 127.0 / np.max(np.abs(values), axis=axis, keepdims=True)
    return np.round(values * scale) / scale


def _reference(table, weights, rotation):
    """What the documented rule answers for every id, plain numpy."""
    turned = table @ rotation
    first = kmeans.product_quantize(turned, GROUPS, CODES, row_weights=weights, iterations=3, seed=0)
    decoded = np.concatenate([first.codebooks[g][first.codes[:, g]] for g in range(GROUPS)], axis=1)
    error = weights * np.sum((table.astype(np.float64) - decoded @ rotation.T) ** 2, axis=1)
    exact = np.sort(np.argsort(-error, kind="stable")[:EXACT])
    served = weights.copy()
    served[exact] = 0.0
    refit = kmeans.product_quantize(turned, GROUPS, CODES, row_weights=served, iterations=3, seed=0)
    return refit, exact


def _layer(freeze=True, codebook_dtype="float32", **kwargs):
    return CodebookEmbedding.from_embedding(
        _table(), GROUPS, CODES, row_weights=_weights(), iterations=3, seed=0, exact_rows=EXACT,
        exact_remap=True, rotate=True, freeze=freeze, codebook_dtype=codebook_dtype, **kwargs,
    )


def test_eigenvalue_allocation_by_hand():
    # Columns with variances 8, 4, 2, 1 (uncorrelated): 8 -> group 0, 4 -> group 1,
    # 2 -> group 1 (log 4 < log 8), 1 -> group 0.
    # Every sign pattern once: the columns are exactly uncorrelated.
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * 4)).reshape(4, -1).T
    table = signs * np.sqrt([8.0, 4.0, 2.0, 1.0])
    for scale in (1.0, 1e-3, 1e3):  # the allocation does not depend on the scale
        rotation = kmeans.balanced_rotation(table * scale, 2)
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(4), atol=1e-6)
        np.testing.assert_allclose(np.abs(rotation), np.eye(4)[:, [0, 3, 1, 2]], atol=1e-6)
    # Nor on the scale of the weights.
    weights = np.random.default_rng(0).integers(1, 9, size=len(table)).astype("float64")
    np.testing.assert_array_equal(kmeans.balanced_rotation(table, 2, row_weights=weights),
                                  kmeans.balanced_rotation(table, 2, row_weights=weights * 1e6))


def test_rotation_follows_the_weighted_rows():
    # Half the rows vary along x, half along y: the weights decide which
    # direction comes first.
    rows = np.zeros((20, 2))
    rows[:10, 0] = np.linspace(-1, 1, 10)
    rows[10:, 1] = np.linspace(-1, 1, 10) * 0.5
    weights = np.r_[np.ones(10), np.full(10, 100.0)]
    np.testing.assert_allclose(np.abs(kmeans.balanced_rotation(rows, 2)[:, 0]), [1, 0], atol=1e-6)
    np.testing.assert_allclose(
        np.abs(kmeans.balanced_rotation(rows, 2, row_weights=weights)[:, 0]), [0, 1], atol=1e-6
    )


@pytest.mark.parametrize("codebook_dtype", ["float32", "int8"])
def test_frozen_rows_follow_the_documented_rule(codebook_dtype):
    layer = _layer(codebook_dtype=codebook_dtype)
    rotation = kmeans.balanced_rotation(_table(), GROUPS, row_weights=_weights())
    refit, exact = _reference(_table(), _weights(), rotation)
    codebooks, stored_rotation = refit.codebooks, rotation
    if codebook_dtype == "int8":
        codebooks = _int8(codebooks, axis=(1, 2))
        stored_rotation = _int8(rotation, axis=0)  # one scale per column
    expected = np.concatenate([codebooks[g][refit.codes[:, g]] for g in range(GROUPS)], axis=1)
    expected = expected @ stored_rotation.T
    expected[exact] = _int8(_table()[exact], axis=1)
    np.testing.assert_array_equal(layer.exact_ids(), exact)
    np.testing.assert_allclose(_numpy(layer(np.arange(V))), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.decoded_table(), expected, rtol=1e-5, atol=1e-5)


def test_rotated_codes_serve_a_turned_table_better_than_plain_codes():
    plain = CodebookEmbedding.from_embedding(_table(), GROUPS, CODES, iterations=10, seed=0)
    rotated = CodebookEmbedding.from_embedding(_table(), GROUPS, CODES, iterations=10, seed=0, rotate=True)
    error = {name: np.sum((layer.decoded_table() - _table()) ** 2) for name, layer in
             (("plain", plain), ("rotated", rotated))}
    assert error["rotated"] < 0.7 * error["plain"]


def test_training_form_codes_the_turned_rows_and_passes_gradients_straight_through():
    layer = _layer(freeze=False)
    exact = layer.exact_ids()
    coded = np.setdiff1d(np.arange(V), exact)
    rotation = _numpy(layer.rotation)
    codebooks = _numpy(layer.codebooks)
    nearest = kmeans.assign_codes(_table() @ rotation, codebooks)
    decoded = np.concatenate([codebooks[g][nearest[:, g]] for g in range(GROUPS)], axis=1) @ rotation.T
    out = _numpy(layer(np.arange(V)))
    np.testing.assert_allclose(out[coded], decoded[coded], atol=1e-5)
    np.testing.assert_array_equal(out[exact], _table()[exact])
    np.testing.assert_array_equal(layer.get_codes(), nearest)
    # One SGD step on sum(output * target) (no VQ losses): each looked-up
    # row moves by exactly lr * target, the rotation being orthogonal.
    model = keras.Sequential([keras.Input((1,), dtype="int32"), layer, keras.layers.Flatten()])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=lambda y, p: -keras.ops.sum(y * p))
    layer.beta = 0.0
    target = np.random.default_rng(2).normal(size=(4, D)).astype("float32")
    ids = coded[:4]
    before = _numpy(layer.embeddings)[ids]
    model.train_on_batch(ids.reshape(4, 1), target)
    moved = _numpy(layer.embeddings)[ids] - before
    # The codebook loss is mean((sg(x) - q)^2): it does not reach the rows.
    np.testing.assert_allclose(moved, 0.1 * target, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(_numpy(layer.rotation), rotation)  # never trained


@pytest.mark.parametrize("codebook_dtype", ["float32", "int8"])
def test_bytes_by_hand(codebook_dtype):
    layer = _layer(codebook_dtype=codebook_dtype)
    codes = V * GROUPS // 2  # 4-bit codes, two per byte
    if codebook_dtype == "float32":
        codebooks, rotation = 4 * CODES * D, 4 * D * D
    else:
        codebooks, rotation = CODES * D + 4 * GROUPS, D * D + 4 * D  # a float32 scale per column
    exact = EXACT * D + 4 * EXACT
    id_map = 2 * V  # int16 slots
    layout = TableLayout.of(layer)
    assert layout.rotate
    assert table_bytes(layer) == layout.stored_bytes() == codes + codebooks + rotation + exact + id_map
    assert f"codebook {GROUPS}x{CODES} {codebook_dtype} rotated" in layout.describe()


@pytest.mark.parametrize("freeze, codebook_dtype", [(True, "int8"), (True, "float32"), (False, "float32")])
def test_saved_and_loaded(tmp_path, freeze, codebook_dtype):
    layer = _layer(freeze=freeze, codebook_dtype=codebook_dtype, mask_zero=True, name="tokens")
    inputs = keras.Input((None,), dtype="int32")
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(layer(inputs)))
    ids = np.random.default_rng(3).integers(0, V, size=(6, 7))
    expected = _numpy(model(ids))
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    loaded = reloaded.get_layer("tokens")
    assert (loaded.rotate, loaded.codes_frozen) == (True, freeze)
    for name in layer.variable_serialization_spec[freeze]:  # what the file holds
        np.testing.assert_array_equal(_numpy(getattr(loaded, name)), _numpy(getattr(layer, name)))
    # The same weights; the matrix product may round differently between calls (PyTorch).
    np.testing.assert_allclose(_numpy(reloaded(ids)), expected, rtol=1e-6, atol=1e-6)


def test_registered_builder_makes_the_planned_rotated_layout():
    dense = keras.layers.Embedding(V, D, name="words")
    dense.build()
    dense.embeddings.assign(_table())
    layout = TableLayout(V, D, groups=GROUPS, codes=CODES, storage="int8", exact_rows=EXACT, exact_remap=True,
                         rotate=True)
    kind = table_kinds.TABLE_KINDS["codebook"]
    built = kind.build(dense, layout, row_weights=_weights(), seed=0)
    kind.finalize(built, layout)
    assert TableLayout.of(built) == layout
    assert table_bytes(built) == layout.stored_bytes()


def test_argument_errors():
    with pytest.raises(ValueError, match="rotate='yes'"):
        CodebookEmbedding(V, D, groups=GROUPS, codes=CODES, rotate="yes")
    with pytest.raises(ValueError, match="rotate=1"):
        TableLayout(V, D, groups=GROUPS, codes=CODES, rotate=1)
    with pytest.raises(ValueError, match="has no rotation"):
        CodebookEmbedding.from_embedding(_table(), GROUPS, CODES, iterations=1).dequantized_rotation()
    with pytest.raises(ValueError, match="groups=3"):
        kmeans.balanced_rotation(_table(), 3)
