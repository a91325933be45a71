"""prune_vocabulary: kept rows, OOV mapping, remap tables, lookups pruned with the table.

The reference is the original model fed ids where every pruned id is replaced
by the OOV id (numpy): the pruned model must give the same outputs on the
original ids, so the input pipeline stays as it was.
"""

import numpy as np
import pytest

import keras

import keras_lowrank
from keras_lowrank.compression import TableLayout
from keras_lowrank.compression import kept_ids
from keras_lowrank.compression import prune_vocabulary
from keras_lowrank.compression import table_bytes
from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.layers import PrunedEmbedding

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, LENGTH = 50, 8, 7


def _model(factorized=False):
    model = keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32"),
            keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3, name="logits"),
        ]
    )
    rng = np.random.default_rng(0)
    model.get_layer("embedding").embeddings.assign(rng.normal(size=(VOCAB, DIM)).astype("float32"))
    if factorized:
        model = keras_lowrank.factorize_embeddings(model, rank=3)
    return model


def _ids(seed=1):
    ids = np.random.default_rng(seed).integers(0, VOCAB, size=(32, LENGTH)).astype("int32")
    ids[:, -1] = 0
    return ids


def _reference(model, ids, kept, oov_id=1):
    mapped = np.where(np.isin(ids, kept), ids, oov_id)
    return keras.ops.convert_to_numpy(model(mapped))


def test_prefix_keeps_first_ids_without_a_remap_table():
    model, ids = _model(), _ids()
    pruned = prune_vocabulary(model, 20)
    layer = pruned.get_layer("embedding")
    assert isinstance(layer, PrunedEmbedding) and not layer.remap and layer.rows == 20
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(ids)), _reference(model, ids, np.arange(20)), atol=1e-6
    )
    assert table_bytes(layer) == 20 * DIM * 4 == TableLayout.of(layer).stored_bytes()


def test_counts_choose_rows_and_store_a_remap_table():
    model, ids = _model(), _ids()
    counts = np.random.default_rng(3).integers(0, 100, size=VOCAB)
    pruned = prune_vocabulary(model, 12, counts=counts)
    kept = kept_ids(VOCAB, 12, counts=counts)
    assert 0 in kept and 1 in kept and len(kept) == 12
    others = np.setdiff1d(np.arange(2, VOCAB), kept)
    assert counts[np.setdiff1d(kept, [0, 1])].min() >= counts[others].max()
    layer = pruned.get_layer("embedding")
    assert layer.remap
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(ids)), _reference(model, ids, kept), atol=1e-6
    )
    # The remap table (int16: 12 rows fit) is counted with the rows.
    assert table_bytes(layer) == 12 * DIM * 4 + VOCAB * 2 == TableLayout.of(layer).stored_bytes()


def test_masking_follows_the_original_ids():
    model, ids = _model(), _ids()
    pruned = prune_vocabulary(model, 10, counts=np.arange(VOCAB)[::-1])
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(pruned.get_layer("embedding").compute_mask(ids)), ids != 0
    )


def test_low_rank_table_is_pruned_with_its_lookup_rows():
    model, ids = _model(factorized=True), _ids()
    pruned = prune_vocabulary(model, 25)
    inner = pruned.get_layer("embedding").embedding
    assert isinstance(inner, LowRankEmbedding) and inner.input_dim == 25 and inner.rank == 3
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(ids)), _reference(model, ids, np.arange(25)), atol=1e-6
    )


def test_pruned_then_factorized_then_quantized_round_trips(tmp_path):
    model, ids = _model(), _ids()
    pruned = prune_vocabulary(model, 30, counts=np.arange(VOCAB)[::-1] % 7)
    small = keras_lowrank.factorize_embeddings(pruned, rank=4)
    small.get_layer("embedding").embedding.quantize("int4")
    expected = keras.ops.convert_to_numpy(small(ids))
    layer = small.get_layer("embedding")
    assert table_bytes(layer) == TableLayout.of(layer).stored_bytes()
    path = tmp_path / "m.keras"
    small.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(ids)), expected)


def test_text_vectorization_is_pruned_consistently():
    texts = np.array(["a a a b b c", "a b d e", "f g a", "c c h"])
    vectorizer = keras.layers.TextVectorization(output_sequence_length=5, name="vectorize")
    vectorizer.adapt(texts)
    size = vectorizer.vocabulary_size()
    inputs = keras.Input((1,), dtype="string")
    x = keras.layers.Embedding(size, 4, mask_zero=True, name="embedding")(vectorizer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x)))
    model.get_layer("embedding").embeddings.assign(
        np.random.default_rng(0).normal(size=(size, 4)).astype("float32")
    )
    queries = np.array([["a b c d"], ["h g f e"], ["zz a"]])
    pruned = prune_vocabulary(model, 5)
    # The 3 most frequent words keep their ids; the others are OOV.
    assert pruned.get_layer("vectorize").get_vocabulary() == model.get_layer("vectorize").get_vocabulary()[:5]
    assert model.get_layer("vectorize").vocabulary_size() == size  # original untouched
    table = pruned.get_layer("embedding")
    assert type(table) is keras.layers.Embedding and table.input_dim == 5
    ids = keras.ops.convert_to_numpy(model.get_layer("vectorize")(queries[:, 0]))
    mapped = np.where(ids < 5, ids, 1)
    embedded = keras.ops.convert_to_numpy(model.get_layer("embedding")(mapped))
    expected = model.layers[-1](model.layers[-2](embedded, mask=mapped != 0))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(queries)), keras.ops.convert_to_numpy(expected), atol=1e-6
    )


@pytest.mark.parametrize(
    "keep, kwargs, match",
    [
        (1, {}, "keep"),
        (VOCAB, {}, "keep"),
        ("ten", {}, "keep"),
        ([0, VOCAB + 3], {}, r"\[0, 50\)"),
        (10, {"counts": np.ones(3)}, "counts"),
        (10, {"oov_id": -1}, "oov_id"),
        (10, {"layer_names": "nope"}, "nope"),
    ],
)
def test_bad_arguments_are_one_clear_error(keep, kwargs, match):
    with pytest.raises(ValueError, match=match):
        prune_vocabulary(_model(), keep, **kwargs)
