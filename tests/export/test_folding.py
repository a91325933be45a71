"""Folding low-rank projections into consumers is exact, shrinks, falls back."""

import keras
import numpy as np
import pytest

from keras_lowrank.export import fold_projections
from keras_lowrank.layers import LowRankEmbedding

pytestmark = pytest.mark.backend_agnostic

V, D, R, L = 300, 24, 4, 10


def _np(x):
    # Torch outputs require grad: convert through Keras, not np.asarray.
    return keras.ops.convert_to_numpy(x)


def _low_rank(name="embedding"):
    layer = LowRankEmbedding(V, D, R, mask_zero=True, name=name)
    layer.build()
    rng = np.random.default_rng(1)
    layer.lookup.assign(rng.normal(size=(V, R)).astype("float32"))
    layer.projection.assign(rng.normal(size=(R, D)).astype("float32") / 3)
    return layer


def _ids():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, size=(6, L)).astype("int32")
    for row, length in enumerate([10, 7, 3, 1, 5, 9]):
        ids[row, length:] = 0
    return ids


CONSUMERS = {
    "dan": lambda x: keras.layers.Dense(3)(
        keras.layers.Dense(8, activation="relu")(
            keras.layers.Dropout(0.5)(keras.layers.GlobalAveragePooling1D()(x))
        )
    ),
    "lstm": lambda x: keras.layers.Dense(3)(keras.layers.LSTM(8)(x)),
    "bigru": lambda x: keras.layers.Dense(3)(
        keras.layers.Bidirectional(keras.layers.GRU(8, return_sequences=True))(x)[:, -1]
    ),
    "conv1d": lambda x: keras.layers.Dense(3)(
        keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(8, 3, padding="same")(x))
    ),
    "token_dense": lambda x: keras.layers.Dense(3)(
        keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(8)(x))
    ),
}
KINDS = {"dan": "pooled_dense", "lstm": "recurrent", "bigru": "recurrent",
         "conv1d": "conv1d", "token_dense": "dense"}


def _model(consumer):
    ids = keras.Input((L,), dtype="int32")
    return keras.Model(ids, consumer(_low_rank()(ids)))


@pytest.mark.parametrize("name", sorted(CONSUMERS))
def test_folding_is_exact_and_smaller(name):
    model = _model(CONSUMERS[name])
    folded, report = fold_projections(model)
    assert report.applied, report
    assert [r.kind for r in report.folded] == [KINDS[name]]
    assert report.bytes_after < report.bytes_before
    assert not any(isinstance(l, LowRankEmbedding) for l in folded.layers)
    ids = _ids()
    np.testing.assert_allclose(_np(folded(ids)), _np(model(ids)), atol=1e-5, rtol=1e-5)


def test_folding_keeps_padding_invariance_of_masked_mean():
    model = _model(CONSUMERS["dan"])
    folded, _ = fold_projections(model)
    ids = _ids()
    ids[:, -1] = 0
    shorter = ids.copy()
    shorter[:, -3:] = 0  # more padding where rows were already short
    same = (ids[:, -3:] == 0).all(axis=1)
    np.testing.assert_allclose(_np(folded(ids))[same], _np(folded(shorter))[same], atol=1e-6)
    np.testing.assert_allclose(_np(folded(ids)), _np(model(ids)), atol=1e-5)


def test_unsupported_consumer_keeps_factorized_form():
    model = _model(lambda x: keras.layers.Dense(3)(
        keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization()(x))
    ))
    same, report = fold_projections(model)
    assert same is model
    assert not report.applied
    assert report.kept and "LayerNormalization" in report.kept[0].reason


def test_mixed_consumers_fold_where_possible():
    ids_in = keras.Input((L,), dtype="int32")
    x = _low_rank()(ids_in)
    a = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization()(x))
    b = keras.layers.LSTM(6)(x)
    model = keras.Model(ids_in, keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    folded, report = fold_projections(model)
    assert report.applied
    assert {r.kind for r in report.records} == {"recurrent", "kept"}
    ids = _ids()
    np.testing.assert_allclose(_np(folded(ids)), _np(model(ids)), atol=1e-5)


def test_sequential_and_no_low_rank():
    model = keras.Sequential([
        keras.Input((L,), dtype="int32"), _low_rank("lr"),
        keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2),
    ])
    folded, report = fold_projections(model)
    assert report.applied
    np.testing.assert_allclose(_np(folded(_ids())), _np(model(_ids())), atol=1e-5)
    plain = keras.Sequential([keras.Input((L,), dtype="int32"),
                              keras.layers.Embedding(V, D), keras.layers.Dense(2)])
    same, report = fold_projections(plain)
    assert same is plain and not report.applied


def test_int8_factors_fold_and_stay_int8():
    model = _model(CONSUMERS["dan"])
    model.get_layer("embedding").quantize("int8")
    folded, report = fold_projections(model)
    assert report.applied
    lookup = folded.get_layer("embedding").lookup
    assert keras.backend.standardize_dtype(lookup.dtype) == "int8"
    np.testing.assert_allclose(_np(folded(_ids())), _np(model(_ids())), atol=1e-4)


@pytest.mark.slow
def test_models_package_classifiers_fold():
    models = pytest.importorskip("keras_lowrank.models")
    for build in (models.dan_classifier, models.cnn_classifier):
        full = build(V, 3, embedding_dim=D, sequence_length=L)
        emb = full.get_layer("embedding")
        low = _low_rank()
        model = keras.models.clone_model(full, clone_function=lambda l: low if l is emb else l)
        folded, report = fold_projections(model)
        assert report.applied and not report.kept, report
        np.testing.assert_allclose(_np(folded(_ids())), _np(model(_ids())), atol=1e-4)


def test_rejects_unbuilt_model():
    with pytest.raises(ValueError, match="model"):
        fold_projections("not a model")
