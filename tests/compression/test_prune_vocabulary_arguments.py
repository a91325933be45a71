"""prune_vocabulary and kept_ids take `keep` and `counts` exactly as documented.

`keep` is an integer count, a 1-D sequence of integer ids or a boolean mask of
one entry per id; `counts` a 1-D array of one count per id, or a dict keyed by
the model's tables. Anything else is one clear `ValueError`, never a silent
reinterpretation (a string read as its digits, a mask read as ids 0 and 1,
floats truncated, a dict key that names nothing ignored). The reference for
the kept rows is numpy's own reading of a mask or an id list.
"""

import numpy as np
import pytest

import keras

from keras_lowrank.compression import kept_ids
from keras_lowrank.compression import prune_vocabulary
from keras_lowrank.layers import PrunedEmbedding

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, LENGTH = 30, 4, 5


def _model():
    model = keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32"),
            keras.layers.Embedding(VOCAB, DIM, name="embedding"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2, name="logits"),
        ]
    )
    rng = np.random.default_rng(0)
    model.get_layer("embedding").embeddings.assign(rng.normal(size=(VOCAB, DIM)).astype("float32"))
    return model


def _two_table_model():
    ids = keras.Input((LENGTH,), dtype="int32")
    first = keras.layers.Embedding(VOCAB, DIM, name="first")(ids)
    second = keras.layers.Embedding(VOCAB, DIM, name="second")(ids)
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Concatenate()([first, second]))
    return keras.Model(ids, keras.layers.Dense(2)(pooled))


@pytest.mark.parametrize("keep", ["10", b"10", True, np.bool_(True), 10.0, np.float32(10), {3: 1, 4: 1}])
def test_keep_that_is_not_an_integer_count_or_ids_is_refused(keep):
    with pytest.raises(ValueError, match=r"Expected `keep` to be an integer number of rows.*received: keep="):
        prune_vocabulary(_model(), keep)


@pytest.mark.parametrize(
    "keep",
    [[1.5, 2.7], [2.0, 3.0], np.array([2.0, 3.0]), ["3", "4"], [True, 3], [[2, 3]], [None, 3]],
)
def test_id_lists_must_be_one_dimensional_integers(keep):
    with pytest.raises(ValueError, match="keep"):
        kept_ids(VOCAB, keep)


@pytest.mark.parametrize("keep", [[-1, 3], [3, VOCAB], np.array([2**40], dtype=np.uint64)])
def test_ids_outside_the_vocabulary_are_refused(keep):
    with pytest.raises(ValueError, match=r"\[0, 30\)"):
        kept_ids(VOCAB, keep)


def test_a_boolean_mask_keeps_the_rows_where_it_is_true():
    mask = np.zeros(VOCAB, dtype=bool)
    mask[[4, 9, 17]] = True
    expected = np.union1d(np.flatnonzero(mask), [0, 1])
    np.testing.assert_array_equal(kept_ids(VOCAB, mask), expected)
    np.testing.assert_array_equal(kept_ids(VOCAB, list(mask)), expected)

    model = _model()
    layer = prune_vocabulary(model, mask).get_layer("embedding")
    assert isinstance(layer, PrunedEmbedding) and layer.rows == expected.size
    # Every id answers its own row if kept, the OOV row (id 1's) otherwise.
    full = keras.ops.convert_to_numpy(model.get_layer("embedding").embeddings)
    reference = np.where(np.isin(np.arange(VOCAB), expected)[:, None], full, full[1])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.embeddings), reference)


@pytest.mark.parametrize("length", [VOCAB - 1, VOCAB + 1, 2])
def test_a_boolean_mask_of_another_length_is_refused(length):
    with pytest.raises(ValueError, match=f"boolean mask of {length} entries"):
        prune_vocabulary(_model(), np.ones(length, dtype=bool))


def test_duplicate_and_unordered_ids_are_a_set():
    np.testing.assert_array_equal(kept_ids(VOCAB, [9, 5, 9, 5]), [0, 1, 5, 9])
    np.testing.assert_array_equal(kept_ids(VOCAB, np.array([9, 5], dtype=np.uint8)), [0, 1, 5, 9])
    np.testing.assert_array_equal(kept_ids(VOCAB, {7, 3}), [0, 1, 3, 7])
    np.testing.assert_array_equal(kept_ids(VOCAB, []), [0, 1])


@pytest.mark.parametrize(
    "counts, match",
    [
        (np.ones(VOCAB - 1), r"shape \(29,\)"),
        (np.ones((1, VOCAB)), r"shape \(1, 30\)"),
        (np.array(["1"] * VOCAB), "dtype <U1"),
        (np.ones(VOCAB, dtype=bool), "dtype bool"),
        (np.full(VOCAB, np.nan), "non-negative finite"),
        (-np.ones(VOCAB), "non-negative finite"),
    ],
)
def test_counts_must_hold_one_number_per_id(counts, match):
    with pytest.raises(ValueError, match=match):
        prune_vocabulary(_model(), 10, counts=counts)


def test_counts_with_an_id_list_are_refused():
    with pytest.raises(ValueError, match="Expected `counts` to be None when `keep` lists the ids"):
        prune_vocabulary(_model(), [3, 4], counts=np.ones(VOCAB))


def test_counts_dict_keys_must_name_tables():
    with pytest.raises(ValueError, match=r"Unknown table name\(s\) \['embeding'\] in `counts`.*\['embedding'\]"):
        prune_vocabulary(_model(), 10, counts={"embeding": np.arange(VOCAB)})


def test_counts_dict_values_are_checked_per_table():
    with pytest.raises(ValueError, match=r"Table 'second': Expected `counts`.*shape \(3,\)"):
        prune_vocabulary(_two_table_model(), 10, counts={"first": np.ones(VOCAB), "second": np.ones(3)})


def test_counts_dict_chooses_each_named_tables_rows():
    counts = np.zeros(VOCAB)
    counts[[20, 25, 28]] = 5.0
    model = _two_table_model()
    pruned = prune_vocabulary(model, 5, counts={"first": counts})
    first, second = pruned.get_layer("first"), pruned.get_layer("second")
    assert first.remap and not second.remap
    mapped = keras.ops.convert_to_numpy(first.id_map)
    kept = np.array([0, 1, 20, 25, 28])
    np.testing.assert_array_equal(mapped[kept], np.arange(5))
    np.testing.assert_array_equal(np.delete(mapped, kept), 1)
