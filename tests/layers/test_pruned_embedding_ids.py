"""PrunedEmbedding: out-of-vocabulary ids of any integer dtype, and its id map.

An id outside `[0, input_dim)` answers the OOV row, as the layer documents,
whatever its dtype: an `int64` id beyond the `int32` range must not wrap into
the vocabulary (2**32 + 3 is not id 3). The reference is numpy: each id's row
is its own (or `id_map[id]`) when in the vocabulary and kept, `oov_id`
otherwise. `set_id_map` takes exactly the array it documents.
"""

import numpy as np
import pytest

import keras

from keras_lowrank.layers import PrunedEmbedding

pytestmark = pytest.mark.backend_agnostic

VOCAB, ROWS, DIM, OOV = 30, 8, 4, 1
IDS = [3, 7, 12, VOCAB - 1, VOCAB, -1, 2**31 - 1, 2**31 + 5, 2**32 + 3, 2**32 + 12, -(2**32) + 3, 2**63 - 1, -(2**63)]


def _layer(remap):
    inner = keras.layers.Embedding(ROWS, DIM)
    inner.build()
    inner.embeddings.assign(np.random.default_rng(0).normal(size=(ROWS, DIM)).astype("float32"))
    layer = PrunedEmbedding(VOCAB, inner, oov_id=OOV, remap=remap)
    layer.build()
    id_map = None
    if remap:
        id_map = np.random.default_rng(1).integers(0, ROWS, size=VOCAB)
        layer.set_id_map(id_map)
    return layer, keras.ops.convert_to_numpy(inner.embeddings), id_map


def _int64(values):
    ids = np.array(values, dtype=np.int64)
    tensor = keras.ops.convert_to_tensor(ids)
    if keras.backend.standardize_dtype(tensor.dtype) != "int64":
        pytest.skip(f"the {keras.backend.backend()} backend holds these ids as int32 (no 64-bit integers)")
    return tensor, ids


def _expected_rows(ids, id_map):
    inside = (ids >= 0) & (ids < VOCAB)
    safe = np.where(inside, ids, 0)
    rows = id_map[safe] if id_map is not None else np.where(safe < ROWS, safe, OOV)
    return np.where(inside, rows, OOV)


@pytest.mark.parametrize("remap", [False, True])
def test_int64_ids_outside_the_vocabulary_answer_the_oov_row(remap):
    layer, table, id_map = _layer(remap)
    tensor, ids = _int64(IDS)
    expected = table[_expected_rows(ids, id_map)]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(tensor)), expected)


def test_int64_ids_in_a_compiled_model_answer_the_oov_row():
    layer, table, _ = _layer(False)
    tensor, ids = _int64([IDS])
    inputs = keras.Input((len(IDS),), dtype="int64")
    model = keras.Model(inputs, layer(inputs))
    predicted = model.predict(keras.ops.convert_to_numpy(tensor), verbose=0)
    np.testing.assert_array_equal(predicted, table[_expected_rows(ids, None)])


@pytest.mark.parametrize("dtype", ["int32", "int16", "uint8"])
def test_narrow_ids_are_mapped_as_they_are(dtype):
    layer, table, id_map = _layer(True)
    ids = np.array([0, 3, 7, 12, 25, VOCAB - 1], dtype=dtype)
    expected = table[_expected_rows(ids.astype(np.int64), id_map)]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(ids)), expected)


@pytest.mark.parametrize(
    "id_map, match",
    [
        ([], r"1-D integer array of 30 entries in \[0, 8\).*dtype float64 and shape \(0,\)"),
        (np.zeros(VOCAB - 1, dtype="int32"), r"shape \(29,\)"),
        (np.zeros((1, VOCAB), dtype="int32"), r"shape \(1, 30\)"),
        (np.linspace(0, ROWS - 1, VOCAB), "dtype float64"),
        (np.zeros(VOCAB, dtype=bool), "dtype bool"),
        (np.full(VOCAB, ROWS), r"30 entries outside it, e.g. id_map\[0\]=8"),
        (np.r_[np.zeros(VOCAB - 1, dtype=int), -1], r"1 entries outside it, e.g. id_map\[29\]=-1"),
    ],
)
def test_set_id_map_refuses_what_it_does_not_document(id_map, match):
    layer, _, before = _layer(True)
    with pytest.raises(ValueError, match=r"Expected `id_map` to be .*" + match):
        layer.set_id_map(id_map)
    # Nothing half-written: the stored map is the previous one.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.id_map), before)


def test_set_id_map_takes_a_tensor():
    layer, _, _ = _layer(True)
    id_map = np.arange(VOCAB) % ROWS
    layer.set_id_map(keras.ops.convert_to_tensor(id_map))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.id_map), id_map)


def test_set_id_map_without_a_remap_table_names_the_layer():
    layer, _, _ = _layer(False)
    with pytest.raises(ValueError, match=r"Layer 'pruned_embedding.*' has no remap table \(remap=False\)"):
        layer.set_id_map(np.zeros(VOCAB, dtype=int))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_dim": 2**31}, "input_dim=2147483648"),
        ({"input_dim": np.bool_(True)}, "input_dim=np.True_"),
        ({"input_dim": 30.0}, "input_dim=30.0"),
        ({"oov_id": ROWS}, "oov_id=8"),
        ({"oov_id": np.bool_(True)}, "oov_id=np.True_"),
        ({"remap": 1}, "remap=1"),
    ],
)
def test_constructor_arguments_are_validated(kwargs, match):
    arguments = {"input_dim": VOCAB, "embedding": keras.layers.Embedding(ROWS, DIM), **kwargs}
    with pytest.raises(ValueError, match=match):
        PrunedEmbedding(**arguments)
