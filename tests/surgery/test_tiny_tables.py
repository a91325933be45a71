"""Tiny tables are never compressed by surprise (plain Keras models).

Segment/type and position tables, and tables where the request cannot be
met, are skipped with a reason unless named in `layer_names`; a call that
would convert nothing is an error listing each table and its reason.
"""

import numpy as np
import pytest

import keras

from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.layers import LowRankReversibleEmbedding
from keras_lowrank.surgery import factorize_embeddings


def _model(tables):
    """A model summing the embeddings of one id input per `(name, V, d)`."""
    inputs, outputs = [], []
    for name, rows, width in tables:
        ids = keras.Input((4,), dtype="int32", name=f"{name}_ids")
        inputs.append(ids)
        outputs.append(keras.layers.Embedding(rows, width, name=name)(ids))
    merged = outputs[0] if len(outputs) == 1 else keras.layers.Concatenate()(outputs)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(merged)))


def test_segment_and_position_tables_are_skipped_with_reasons():
    model = _model([("words", 500, 16), ("segment_embedding", 2, 16), ("position_embedding", 64, 16)])
    small, report = factorize_embeddings(model, compression=0.5, return_report=True)
    assert [row.name for row in report.rows] == ["words"]
    reasons = {row.name: row.reason for row in report.skipped}
    assert "segment/type" in reasons["segment_embedding"]
    assert "position" in reasons["position_embedding"]
    assert type(small.get_layer("segment_embedding")) is keras.layers.Embedding
    assert "skipped segment_embedding" in str(report)
    assert report.to_dict()["skipped"][0]["name"] == "segment_embedding"


def test_unreachable_ratio_is_skipped():
    # 3 x 16: rank 1 keeps 19/48 = 39.6% of the parameters, so 90% cannot
    # be reached; today's rank-1 "compression" would silently change outputs.
    model = _model([("words", 500, 16), ("small", 3, 16)])
    _, report = factorize_embeddings(model, compression=0.9, return_report=True)
    assert [row.name for row in report.rows] == ["words"]
    assert "cannot be reached" in report.skipped[0].reason
    _, report = factorize_embeddings(model, rank=3, return_report=True)
    assert "saves nothing" in report.skipped[0].reason


def test_named_table_is_converted_anyway():
    model = _model([("words", 500, 16), ("segment_embedding", 2, 16)])
    small = factorize_embeddings(model, rank=1, layer_names=["segment_embedding"])
    assert isinstance(small.get_layer("segment_embedding"), LowRankEmbedding)
    assert type(small.get_layer("words")) is keras.layers.Embedding


def test_converting_nothing_is_an_error_listing_what_was_found():
    model = _model([("segment_embedding", 2, 16), ("tiny", 3, 16)])
    with pytest.raises(ValueError) as error:
        factorize_embeddings(model, compression=0.9)
    message = str(error.value)
    assert "Nothing to convert" in message
    assert "'segment_embedding' (2x16): a segment/type table" in message
    assert "'tiny' (3x16): compression 90.0% cannot be reached" in message
    # The original model is unchanged.
    assert type(model.get_layer("tiny")) is keras.layers.Embedding


def test_reversible_embedding_in_a_plain_model():
    ids = keras.Input((5,), dtype="int32")
    embedding = keras.layers.ReversibleEmbedding(120, 8, name="token_embedding")
    model = keras.Model(ids, embedding(keras.layers.Dense(8)(embedding(ids)), reverse=True))
    small = factorize_embeddings(model, rank=2, layer_names="token_embedding")
    new = small.get_layer("token_embedding")
    assert isinstance(new, LowRankReversibleEmbedding)
    x = np.random.randint(0, 120, size=(3, 5))
    lookup, projection = (keras.ops.convert_to_numpy(w) for w in new.weights)
    embedding.embeddings.assign(lookup @ projection)
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)
