"""`compress()` of a sentence encoder without labels (objective="embedding").

References: the fidelity figures against explicit loops over pairs and
neighbours; the report's figures against cosines computed here from the
input and the returned models' own outputs.
"""

import re

import numpy as np
import pytest

import keras

import keras_lowrank
from keras_lowrank.compression.fidelity import embedding_fidelity
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.surgery import find_embeddings

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, LENGTH = 300, 16, 10


def _brute_force(reference, compressed, k):
    def unit(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    a, b = unit(np.asarray(reference, np.float64)), unit(np.asarray(compressed, np.float64))
    n = len(a)
    cosines = [float(a[i] @ b[i]) for i in range(n)]

    def neighbours(u, i):
        others = [j for j in range(n) if j != i]
        # Most similar first, ties to the lower index.
        return sorted(others, key=lambda j: (-float(u[i] @ u[j]), j))[:k]

    nn1 = np.mean([neighbours(a, i)[0] == neighbours(b, i)[0] for i in range(n)])
    overlap = np.mean([len(set(neighbours(a, i)) & set(neighbours(b, i))) / k for i in range(n)])
    return np.mean(cosines), np.min(cosines), nn1, overlap


def test_fidelity_figures_match_explicit_loops():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(40, 6))
    compressed = reference + 0.7 * rng.normal(size=(40, 6))
    figures = embedding_fidelity(reference, compressed, k=5)
    mean, low, nn1, overlap = _brute_force(reference, compressed, 5)
    assert figures["mean_cosine"] == pytest.approx(mean)
    assert figures["min_cosine"] == pytest.approx(low)
    assert figures["nn1_agreement"] == pytest.approx(nn1)
    assert figures["nn5_overlap"] == pytest.approx(overlap)
    same = embedding_fidelity(reference, 3 * reference, k=5)
    assert same["mean_cosine"] == pytest.approx(1.0) and same["nn1_agreement"] == 1.0 == same["nn5_overlap"]
    with pytest.raises(ValueError, match="same shape"):
        embedding_fidelity(reference, compressed[:5])


def _ids(n, seed):
    rng = np.random.default_rng(seed)
    ids = np.minimum(rng.zipf(1.3, size=(n, LENGTH)) + 1, VOCAB - 1).astype("int32")
    ids[:, -2:] = 0
    return ids


@pytest.fixture(scope="module")
def encoder():
    keras.utils.set_random_seed(0)
    ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding")(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    vectors = keras.layers.UnitNormalization()(keras.layers.Dense(DIM)(x))
    return keras.Model(ids, vectors, name="encoder")


def _cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def test_unlabeled_inputs_compress_an_encoder_by_fidelity(encoder):
    train, val = _ids(300, 1), _ids(80, 2)
    small, report = keras_lowrank.compress(
        encoder, train, val, size=0.2, epochs=1, candidates=3, seed=0, verbose=0, return_report=True)
    assert report.objective == "embedding"
    expected = _cosines(keras.ops.convert_to_numpy(encoder(val)), keras.ops.convert_to_numpy(small(val)))
    assert report.fidelity["mean_cosine"] == pytest.approx(float(np.mean(expected)), abs=1e-5)
    assert report.fidelity["min_cosine"] == pytest.approx(float(np.min(expected)), abs=1e-5)
    assert {"nn1_agreement", "nn10_overlap"} <= set(report.fidelity)
    assert report.score == pytest.approx(report.fidelity["mean_cosine"], abs=1e-5)
    # An encoder keeps every token unless asked: no candidate prunes.
    assert all(not TableLayout.from_dict(r["layout"]).pruned for c in report.candidates for r in c.recipe.values())
    assert any("not pruned" in note for note in report.notes)
    ((_, table),) = find_embeddings(small, include_factorized=True)
    assert report.embedding_bytes == TableLayout.of(table).stored_bytes() <= report.budget_bytes
    assert all(c.fidelity for c in report.candidates if c.final)
    assert "embedding fidelity" in str(report)


def test_a_domain_encoder_may_be_pruned_and_dict_inputs_work():
    keras.utils.set_random_seed(0)
    ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    mask = keras.Input((LENGTH,), dtype="bool", name="padding_mask")
    x = keras.layers.Embedding(VOCAB, DIM, name="embedding")(ids)
    pooled = keras.layers.GlobalAveragePooling1D()(x, mask=mask)
    model = keras.Model({"token_ids": ids, "padding_mask": mask}, keras.layers.Dense(DIM)(pooled))
    train, val = _ids(300, 1), _ids(80, 2)
    data = {"token_ids": train, "padding_mask": train != 0}
    dev = {"token_ids": val, "padding_mask": val != 0}
    small, report = keras_lowrank.compress(
        model, data, dev, size=0.05, prune=True, epochs=1, candidates=4, seed=0, verbose=0, return_report=True)
    assert report.objective == "embedding"
    assert any(TableLayout.from_dict(r["layout"]).pruned for c in report.candidates for r in c.recipe.values())
    assert any("domain encoder" in note for note in report.notes)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(small(dev))))


def test_objective_is_checked_and_labels_are_refused_for_the_embedding_objective(encoder):
    train = _ids(50, 1)
    with pytest.raises(ValueError, match="received: objective='cosine'"):
        keras_lowrank.compress(encoder, train, train, size=0.2, objective="cosine")
    with pytest.raises(ValueError, match="without labels"):
        keras_lowrank.compress(encoder, (train, np.zeros(50)), (train, np.zeros(50)), size=0.2,
                               objective="embedding")


def test_candidates_learn_the_vectors_with_dropout_off_and_keep_their_rates(monkeypatch):
    keras.utils.set_random_seed(0)
    ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding")(ids)
    x = keras.layers.Dropout(0.3, name="token_dropout")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(ids, keras.layers.UnitNormalization()(keras.layers.Dense(DIM)(x)), name="encoder")
    # Every call of a Dropout layer in training mode, with the rate it ran at.
    calls = []
    original = keras.layers.Dropout.call

    def spy(self, inputs, training=False):
        if training:
            calls.append(self.rate)
        return original(self, inputs, training=training)

    monkeypatch.setattr(keras.layers.Dropout, "call", spy)
    small, report = keras_lowrank.compress(
        model, _ids(200, 1), _ids(60, 2), size=0.2, epochs=1, candidates=2, seed=0, verbose=0,
        return_report=True)
    assert calls and set(calls) == {0.0}
    assert small.get_layer("token_dropout").rate == 0.3 == model.get_layer("token_dropout").rate
    assert any("dropout off" in note for note in report.notes)


def test_a_given_loss_fine_tunes_the_encoder_and_the_choice_stays_on_the_cosine(encoder, monkeypatch):
    compiled = []
    real = keras.Model.compile

    def compile_spy(self, *args, **kwargs):
        compiled.append(kwargs.get("loss"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "compile", compile_spy)
    train, val = _ids(200, 1), _ids(60, 2)
    small, report = keras_lowrank.compress(
        encoder, train, val, size=0.2, epochs=1, candidates=2, seed=0, verbose=0, return_report=True,
        loss="mean_squared_error")
    # Every candidate's fine-tune: without `loss=`, a keras.losses.CosineSimilarity.
    assert compiled and set(compiled) == {"mean_squared_error"}
    assert any("loss 'mean_squared_error'" in note for note in report.notes)
    expected = _cosines(keras.ops.convert_to_numpy(encoder(val)), keras.ops.convert_to_numpy(small(val)))
    assert report.score == pytest.approx(float(np.mean(expected)), abs=1e-5)


def test_every_candidate_reports_its_fidelity_with_the_weights_it_was_scored_with(encoder):
    train, val = _ids(300, 1), _ids(80, 2)
    _, report = keras_lowrank.compress(
        encoder, train, val, size=0.2, epochs=1, candidates=5, seed=0, verbose=0, return_report=True)
    stopped = [c for c in report.candidates if not c.final and c.error is None]
    assert stopped, "the search stopped no candidate: the test needs one"
    for candidate in stopped:
        # Its score is the Keras metric of its best weights; the figures are
        # computed anew from those weights' vectors.
        assert candidate.fidelity["mean_cosine"] == pytest.approx(candidate.score, abs=1e-5)
        assert {"nn1_agreement", "nn10_overlap", "min_cosine"} <= set(candidate.fidelity)
    text = str(report)
    assert "NN@1" in text and "NN@10" in text
    for candidate in report.candidates:
        # The description's own line: "rank 14 int4" is also the start of
        # "rank 14 int4, frequency-weighted".
        line = next(line for line in text.splitlines()
                    if re.match(rf"[*\s]*{re.escape(candidate.description)}\s{{2,}}", line))
        assert f"{candidate.fidelity['nn1_agreement']:.4f}" in line
