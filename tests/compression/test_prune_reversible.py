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
from keras_lowrank import _keras_private
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

    # The reference: the original model whose pruned ids hold the OOV row
    # (forward) and the OOV column (reverse, untied).
    id_map = _numpy(layer.id_map).astype(int)
    kept_forward, kept_reverse = _effective(layer, id_map)
    reference = _tied_lm(tie_weights)
    reference.set_weights(model.get_weights())
    table = reference.get_layer("tokens")
    table.embeddings.assign(kept_forward.astype("float32"))
    if not tie_weights:
        table.reverse_embeddings.assign(kept_reverse.T.astype("float32"))
    ids = rng.integers(0, VOCAB, size=(4, LENGTH)).astype("int32")
    expected = _numpy(reference(ids))
    np.testing.assert_allclose(_numpy(pruned(ids)), expected, atol=1e-5)
    # Kept ids keep their own rows.
    kept = np.flatnonzero(np.bincount(id_map, minlength=25))
    assert len(kept) == 25

    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(_numpy(restored(ids)), _numpy(pruned(ids)))


def test_graph_calls_tell_a_head_from_a_lookup():
    head = _tied_lm().get_layer("tokens")
    assert [bool(k.get("reverse")) for k in _keras_private.graph_call_kwargs(head)] == [False, True]
    notes = []
    compress_module = __import__("keras_lowrank.compression.compress", fromlist=["_may_prune"])
    assert not compress_module._may_prune("tokens", head, notes)
    assert "reverse=True" in notes[0]
    lookup_only = keras.layers.ReversibleEmbedding(VOCAB, DIM)
    ids = keras.Input((LENGTH,), dtype="int32")
    keras.Model(ids, lookup_only(ids))
    assert compress_module._may_prune("tokens", lookup_only, [])
    # Never called in a graph: its calls are unknown, so not pruned.
    assert not compress_module._may_prune("tokens", keras.layers.ReversibleEmbedding(VOCAB, DIM), [])


def test_planner_sizes_an_untied_table_for_both_of_its_tables():
    budget = int(0.2 * 4 * VOCAB * DIM * 2)
    recipes = planner.plan_recipes(VOCAB * 10, DIM, budget * 10, untied_reverse=True)
    assert recipes and {r.family for r in recipes} == set(planner.FAMILIES)
    assert all(r.layout.untied_reverse for r in recipes)
    assert all(r.layout.stored_bytes() <= budget * 10 for r in recipes)
    # The same budget buys a larger rank for one table than for two.
    tied_rank = max(r.layout.rank for r in planner.plan_recipes(VOCAB * 10, DIM, budget * 10, prune=False))
    untied_rank = max(r.layout.rank for r in planner.plan_recipes(
        VOCAB * 10, DIM, budget * 10, prune=False, untied_reverse=True))
    assert untied_rank < tied_rank


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
