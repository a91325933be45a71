"""Pruning reversible tables: `PrunedEmbedding(reverse=True)`, `prune_vocabulary`, `compress()`.

The reference for every pruned reversible table is the full-vocabulary table
in which each pruned id holds the OOV row (for an untied table, the same
holds for the columns of the reverse table), computed in numpy: embeddings
of the original ids and logits `h @ E_eff^T` must both match it.
"""

import numpy as np
import pytest

import keras

import keras_lowrank
from keras_lowrank.compression import TableLayout
from keras_lowrank.compression import planner
from keras_lowrank.compression import prune_vocabulary
from keras_lowrank.compression import table_bytes
from keras_lowrank.layers import LowRankReversibleEmbedding
from keras_lowrank.layers import PrunedEmbedding

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, LENGTH = 60, 8, 6


def _numpy(x):
    return keras.ops.convert_to_numpy(x).astype("float64")


def _effective(layer, id_map):
    """(forward table, reverse table as [V, d]) of a pruned layer, from its kept rows."""
    inner = layer.embedding
    if isinstance(inner, LowRankReversibleEmbedding):
        lookup, projection = (_numpy(w) for w in inner.dequantized_factors())
        forward = lookup @ projection
        reverse_lookup, reverse_projection = (_numpy(w) for w in inner.dequantized_reverse_factors())
        reverse = reverse_lookup @ reverse_projection
    elif inner.quantization_mode == "int8":
        # Keras' int8 table: codes with one scale per row (per id).
        forward = _numpy(inner.embeddings) / _numpy(inner.embeddings_scale)[:, None]
        reverse = forward if inner.tie_weights else (
            _numpy(inner.reverse_embeddings).T / _numpy(inner.reverse_embeddings_scale)[:, None])
    else:
        forward = _numpy(inner.embeddings)
        reverse = forward if inner.tie_weights else _numpy(inner.reverse_embeddings).T
    return forward[id_map], reverse[id_map]


@pytest.mark.parametrize("tie_weights", [True, False])
@pytest.mark.parametrize("kind", ["dense", "low_rank", "dense_int8", "low_rank_int4"])
def test_pruned_reversible_layer_answers_the_effective_table(kind, tie_weights):
    rows = 20
    if kind.startswith("low_rank"):
        inner = LowRankReversibleEmbedding(rows, DIM, rank=3, tie_weights=tie_weights)
    else:
        inner = keras.layers.ReversibleEmbedding(rows, DIM, tie_weights=tie_weights)
    inner.build()
    rng = np.random.default_rng(0)
    inner.set_weights([rng.normal(size=w.shape).astype("float32") for w in inner.get_weights()])
    if kind.endswith("int8") or kind.endswith("int4"):
        inner.quantize(kind.rsplit("_", 1)[-1])
    layer = PrunedEmbedding(VOCAB, inner, oov_id=1, remap=True)
    id_map = rng.integers(0, rows, size=VOCAB)
    layer.set_id_map(id_map)
    forward, reverse = _effective(layer, id_map)

    ids = rng.integers(0, VOCAB, size=(3, LENGTH))
    np.testing.assert_allclose(_numpy(layer(ids)), forward[ids], atol=1e-5)
    hidden = rng.normal(size=(3, LENGTH, DIM)).astype("float32")
    logits = _numpy(layer(hidden, reverse=True))
    assert logits.shape == (3, LENGTH, VOCAB)
    expected = hidden @ reverse.T
    # Keras' int8 reverse call also quantizes its inputs (per row, 127 levels).
    atol = 0.02 * np.abs(expected).max() if kind == "dense_int8" else 1e-4
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=atol)

    symbolic = layer(keras.Input((LENGTH, DIM)), reverse=True)
    assert tuple(symbolic.shape) == (None, LENGTH, VOCAB)


def test_reverse_of_a_plain_table_is_one_clear_error():
    inner = keras.layers.Embedding(10, DIM)
    layer = PrunedEmbedding(VOCAB, inner)
    layer.build()
    with pytest.raises(ValueError, match="needs a reversible table.*wraps a Embedding"):
        layer(np.zeros((1, DIM), "float32"), reverse=True)


def _tied_lm(tie_weights=True):
    """ids -> reversible table -> dense -> logits over the vocabulary through the table."""
    table = keras.layers.ReversibleEmbedding(VOCAB, DIM, tie_weights=tie_weights, name="tokens")
    ids = keras.Input((LENGTH,), dtype="int32")
    hidden = keras.layers.Dense(DIM, name="mix")(table(ids))
    model = keras.Model(ids, table(hidden, reverse=True))
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.mark.parametrize("tie_weights", [True, False])
def test_prune_vocabulary_keeps_both_directions_of_a_reversible_table(tie_weights, tmp_path):
    model = _tied_lm(tie_weights)
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 50, size=VOCAB)
    pruned = prune_vocabulary(model, 25, counts=counts, layer_names="tokens")
    layer = pruned.get_layer("tokens")
    assert isinstance(layer, PrunedEmbedding) and layer.reversible and layer.rows == 25
    assert TableLayout.of(layer).stored_bytes() == table_bytes(layer)

    # The reference, from the original weights: the 25 most counted ids
    # (ties: smaller id; 0 and the OOV id 1 always) keep their rows and
    # columns, every other id holds the OOV id's.
    order = np.argsort(-counts, kind="stable")
    kept = np.union1d([0, 1], order[~np.isin(order, [0, 1])][:23])
    answered = np.where(np.isin(np.arange(VOCAB), kept), np.arange(VOCAB), 1)
    reference = _tied_lm(tie_weights)
    reference.set_weights(model.get_weights())
    table = reference.get_layer("tokens")
    table.embeddings.assign(_numpy(table.embeddings)[answered].astype("float32"))
    if not tie_weights:
        table.reverse_embeddings.assign(_numpy(table.reverse_embeddings)[:, answered].astype("float32"))
    ids = rng.integers(0, VOCAB, size=(4, LENGTH)).astype("int32")
    expected = _numpy(reference(ids))
    np.testing.assert_allclose(_numpy(pruned(ids)), expected, atol=1e-5)

    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(_numpy(restored(ids)), _numpy(pruned(ids)))


def test_reverse_logits_carry_no_mask():
    inner = keras.layers.ReversibleEmbedding(6, DIM, mask_zero=True)
    layer = PrunedEmbedding(VOCAB, inner)
    layer.build()
    ids = np.array([[3, 0, 40]])
    embedded = layer(ids)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(embedded._keras_mask), [[True, False, True]])
    logits = layer(np.ones((1, 3, DIM), "float32"), reverse=True)
    assert getattr(logits, "_keras_mask", None) is None


class _Head(keras.layers.Layer):
    """Computes logits with a table it holds, inside its own `call` (as KerasHub's MaskedLMHead)."""

    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    def call(self, hidden):
        return self.table(hidden, reverse=True)


def test_only_a_table_computing_logits_is_kept_whole():
    compress_module = __import__("keras_lowrank.compression.compress", fromlist=["_may_prune"])
    data = _data(16, 0)
    notes = []
    model = _tied_lm()
    assert not compress_module._may_prune(model, "tokens", model.get_layer("tokens"), data, 1, notes)
    assert "reverse=True" in notes[0]
    # Called in reverse inside another layer: no graph node says so.
    table = keras.layers.ReversibleEmbedding(VOCAB, DIM, name="tokens")
    ids = keras.Input((LENGTH,), dtype="int32")
    headed = keras.Model(ids, _Head(table)(keras.layers.Dense(DIM)(table(ids))))
    assert not compress_module._may_prune(headed, "tokens", table, data, 1, [])
    # A lookup only: pruned.
    classifier = _classifier(True)
    assert compress_module._may_prune(classifier, "tokens", classifier.get_layer("tokens"), data, 1, [])
    # An OOV id outside the table: not pruned, said.
    notes = []
    assert not compress_module._may_prune(classifier, "tokens", classifier.get_layer("tokens"), data, VOCAB, notes)
    assert "is no id" in notes[0]


def test_planner_sizes_an_untied_table_for_both_of_its_tables():
    V, d = 2000, 32
    budget = int(0.1 * 4 * V * d * 2)
    recipes = planner.plan_recipes(V, d, budget, untied_reverse=True)
    assert all(r.layout.untied_reverse for r in recipes)
    assert all(r.layout.stored_bytes() <= budget for r in recipes)
    # Every family of a kind with a reversible twin in every storage, dense
    # int4 rows included (Keras' untied int4 table costs more than two
    # forward tables per row); no codebook table (it has no reversible twin).
    assert {(r.family, r.layout.storage) for r in recipes} == {
        (family, storage) for family in ("low-rank", "pruned+low-rank", "pruned")
        for storage in ("float32", "int8", "int4")}
    # Each size is the largest that fits: one more row or rank does not.
    for r in recipes:
        if r.family == "low-rank":
            bigger = TableLayout(V, d, rank=r.layout.rank + 1, storage=r.layout.storage, untied_reverse=True)
            assert not bigger.useful or bigger.stored_bytes() > budget


def _classifier(tie_weights):
    table = keras.layers.ReversibleEmbedding(VOCAB, DIM, tie_weights=tie_weights, name="tokens")
    ids = keras.Input((LENGTH,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(table(ids))
    model = keras.Model(ids, keras.layers.Dense(3)(pooled))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _data(n, seed):
    rng = np.random.default_rng(seed)
    ids = np.minimum(rng.zipf(1.6, size=(n, LENGTH)), VOCAB - 1).astype("int32")
    return ids, rng.integers(0, 3, size=n)


@pytest.mark.parametrize("tie_weights", [True, False])
def test_compress_prunes_a_reversible_lookup_and_meets_the_budget(tie_weights):
    model = _classifier(tie_weights)
    train, validation = _data(64, 0), _data(32, 1)
    small, report = keras_lowrank.compress(
        model, train, validation, size=0.3, epochs=1, candidates=3, batch_size=32, seed=0,
        verbose=0, return_report=True,
    )
    # Before: every candidate of an untied table failed its byte check.
    assert all(c.error is None for c in report.candidates), [c.error for c in report.candidates]
    families = {c.recipe["tokens"]["family"] for c in report.candidates}
    assert families & {"pruned", "pruned+low-rank"}
    assert report.embedding_bytes == table_bytes(small.get_layer("tokens")) <= report.budget_bytes
    # An untied table stores two tables: the budget is a share of both.
    assert report.float32_embedding_bytes == 4 * VOCAB * DIM * (1 if tie_weights else 2)
    assert not any("not pruned" in note for note in report.notes)


def test_compress_never_prunes_a_table_computing_logits():
    model = _tied_lm()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = _data(48, 0)[0]
    train = (ids, np.roll(ids, -1, axis=1))
    small, report = keras_lowrank.compress(
        model, train, train, size=0.3, epochs=1, candidates=2, batch_size=16, seed=0,
        verbose=0, return_report=True,
    )
    assert all(c.recipe["tokens"]["layout"]["rows"] == VOCAB for c in report.candidates)
    assert any("not pruned" in note and "reverse=True" in note for note in report.notes)
