"""`compress()` with codebook tables, and its search over every table kind.

References: `table_bytes` of the returned layer and an independent sum of
the arrays it gives back, the planned layout, outputs of the saved and
reloaded model, the rung plan's arithmetic.
"""

import numpy as np
import pytest

import keras

import keras_lowrank
from keras_lowrank.compression import search
from keras_lowrank.layers import CodebookEmbedding
from keras_lowrank.layers import table_kinds
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import table_bytes
from keras_lowrank.surgery import find_embeddings

pytestmark = pytest.mark.backend_agnostic

# The intent-classifier task of the compress() API tests: the same model and data.
from tests.compression.test_compress_api import DIM  # noqa: E402
from tests.compression.test_compress_api import VOCAB  # noqa: E402
from tests.compression.test_compress_api import task  # noqa: E402,F401 - the fixture


def _table(model):
    found = find_embeddings(model, include_factorized=True)
    assert len(found) == 1
    return found[0][1]


def test_codebook_only_search_returns_a_frozen_codebook_table_within_budget(task, tmp_path):
    model, train, val = task
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    small, report = keras_lowrank.compress(
        model, train, val, size=0.1, kinds=("codebook",), epochs=1, candidates=3, seed=0, verbose=0,
        return_report=True,
    )
    table = _table(small)
    inner = table_kinds.stored_table(table)
    assert isinstance(inner, CodebookEmbedding) and inner.codes_frozen
    assert not hasattr(inner, "embeddings")  # the V x d training table is gone
    layout = TableLayout.of(table)
    assert layout.kind == "codebook"
    stored = int(sum(np.asarray(w).nbytes for w in table.get_weights()))
    assert report.embedding_bytes == table_bytes(table) == stored == layout.stored_bytes()
    assert report.embedding_bytes <= report.budget_bytes == int(0.1 * 4 * VOCAB * DIM)
    assert all("codebook" in row["family"] for c in report.candidates for row in c.recipe.values())
    # Three recipes: one rung of 3 to a third of an epoch, then 2 finalists to one.
    assert report.rungs == [{"trials": 3, "epochs": 1 / 3}, {"trials": 2, "epochs": 1}]
    assert sum(c.final for c in report.candidates) == 2
    assert all(len(c.rung_scores) == (2 if c.final else 1) for c in report.candidates if c.error is None)
    # The input model is untouched.
    for old, now in zip(before, model.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(now))
    expected = keras.ops.convert_to_numpy(small(val[0]))
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(val[0])), expected)
    assert type(loaded) is type(model)


def test_default_search_compares_every_family(task):
    model, train, val = task
    small, report = keras_lowrank.compress(
        model, train, val, size=0.05, epochs=1, candidates=6, seed=0, verbose=0, return_report=True,
    )
    families = {row["family"] for c in report.candidates for row in c.recipe.values()}
    kinds = {row["layout"]["kind"] for c in report.candidates for row in c.recipe.values()}
    assert kinds == {"dense", "low-rank", "codebook"}
    assert len(families) >= 4
    assert len(report.candidates) == 6
    assert report.rungs == [vars(r) for r in search.rung_plan(6, 1)]
    chosen = [c for c in report.candidates if c.recipe == report.recipe]
    assert len(chosen) == 1 and chosen[0].final
    # The winner is the best final score (ties: fewer bytes).
    finals = [c for c in report.candidates if c.final and c.error is None]
    best = max(finals, key=lambda c: (c.score, -c.embedding_bytes))
    assert chosen[0] is best
    assert table_bytes(_table(small)) == report.embedding_bytes <= report.budget_bytes
    assert "rung 1" in str(report)


def test_bad_kinds_are_refused_by_name(task):
    model, train, val = task
    with pytest.raises(ValueError, match=r"`kinds`.*received: kinds=\('pq',\)"):
        keras_lowrank.compress(model, train, val, size=0.05, kinds=("pq",))
    with pytest.raises(ValueError, match="received: kinds='codebook'"):
        keras_lowrank.compress(model, train, val, size=0.05, kinds="codebook")


def test_the_saved_result_holds_no_optimizer_moments(task, tmp_path):
    import io
    import zipfile

    import h5py

    model, train, val = task
    small = keras_lowrank.compress(model, train, val, size=0.3, epochs=1, candidates=2, seed=0, verbose=0)
    path = tmp_path / "small.keras"
    small.save(path)
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
        optimizer = h5["optimizer"]["vars"]
        # Only the step count and the rate: no zero Adam moment per weight.
        assert len(optimizer) <= 2
        assert all(optimizer[name].size <= 1 for name in optimizer)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(val[0])),
                                  keras.ops.convert_to_numpy(small(val[0])))


def test_the_report_gives_the_whole_model_bytes(task):
    model, train, val = task
    small, report = keras_lowrank.compress(
        model, train, val, size=0.2, epochs=1, candidates=2, seed=0, verbose=0, return_report=True)

    def by_hand(m):
        return sum(np.asarray(w).nbytes for w in m.get_weights())

    assert report.model_bytes == by_hand(small)
    assert report.input_model_bytes == by_hand(model)
    # Everything outside the table is unchanged.
    assert report.input_model_bytes - 4 * VOCAB * DIM == report.model_bytes - report.embedding_bytes
    assert "whole model:" in str(report)


def test_every_recipe_trains_the_steps_its_rungs_give_it(task):
    model, train, val = task
    _, report = keras_lowrank.compress(
        model, train, val, size=0.1, epochs=2, candidates=5, batch_size=64, seed=0, verbose=0,
        return_report=True)
    steps_per_epoch = len(train[1]) // 64  # full batches only: 600 examples, 9 of 64
    pieces = search.piece_plan(search.rung_plan(5, 2), steps_per_epoch)
    for candidate in report.candidates:
        assert candidate.error is None
        # Every piece up to the last rung it reached, and no step more.
        expected = sum(steps for end, steps in pieces if end <= candidate.epochs + 1e-9)
        assert candidate.steps == expected > 0, candidate.description


def test_the_search_fills_a_codebook_budget_with_exact_rows(task, tmp_path):
    model, train, val = task
    small, report = keras_lowrank.compress(
        model, train, val, size=0.1, kinds=("codebook",), epochs=1, candidates=3, seed=0, verbose=0,
        return_report=True,
    )
    families = [row["family"] for c in report.candidates for row in c.recipe.values()]
    # Families take turns: each is compared by training.
    assert sorted(families) == ["codebook", "codebook+exact", "pruned+codebook"]
    exact = next(c for c in report.candidates if "exact" in next(iter(c.recipe.values()))["family"])
    layout = TableLayout.from_dict(next(iter(exact.recipe.values()))["layout"])
    assert layout.exact_rows > 0 and layout.stored_bytes() <= report.budget_bytes
    assert layout.stored_bytes() + DIM + 4 > report.budget_bytes  # filled to the last row
    assert exact.embedding_bytes == layout.stored_bytes()
    table = table_kinds.stored_table(_table(small))
    assert table_bytes(_table(small)) == report.embedding_bytes <= report.budget_bytes
    if table.exact_rows:
        # The stored exact rows are int8, and the saved file answers alike.
        assert table.codes_frozen and str(table.quantized_exact_rows.dtype).endswith("int8")
    expected = keras.ops.convert_to_numpy(small(val[0]))
    small.save(tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(val[0])), expected)
