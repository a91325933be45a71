"""Copying subclassed models that cannot be re-created from their config.

The subclassed model of Keras' own guides has an `__init__` without
arguments that creates its layers, a `call`, and no `get_config()`: Keras
cannot revive it from its config, so it is copied by constructing it anew.
The reference for the conversion is the original model holding the dense
rank-r table computed with numpy.
"""

import numpy as np
import pytest

import keras

import keras_lowrank
from keras_lowrank import factorize_embeddings
from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.surgery import copy_model

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, LENGTH, CLASSES = 40, 12, 6, 3


class GuideClassifier(keras.Model):
    """As in Keras' guides: no `__init__` argument, no `get_config()`."""

    def __init__(self):
        super().__init__()
        self.embedding = keras.layers.Embedding(VOCAB, DIM)
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.dense = keras.layers.Dense(CLASSES)

    def call(self, inputs):
        return self.dense(self.pool(self.embedding(inputs)))


class NeedsTable(keras.Model):
    """A required `__init__` argument, and no `get_config()`."""

    def __init__(self, bias):
        super().__init__()
        self.bias = bias
        self.embedding = keras.layers.Embedding(VOCAB, DIM)
        self.dense = keras.layers.Dense(CLASSES)

    def call(self, inputs):
        return self.dense(keras.ops.mean(self.embedding(inputs), axis=1)) + self.bias


class Configured(keras.Model):
    """Required `__init__` arguments and a `get_config()` returning them."""

    def __init__(self, vocab, dim, **kwargs):
        super().__init__(**kwargs)
        self.vocab, self.dim = vocab, dim
        self.embedding = keras.layers.Embedding(vocab, dim)
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.dense = keras.layers.Dense(CLASSES)

    def call(self, inputs):
        return self.dense(self.pool(self.embedding(inputs)))

    def get_config(self):
        return {**super().get_config(), "vocab": self.vocab, "dim": self.dim}


def _ids(n=8, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, size=(n, LENGTH)).astype("int32")


def _trained(model):
    """`model` built on ids, its table set to a full-rank random one."""
    model(_ids())
    table = np.random.default_rng(1).normal(size=(VOCAB, DIM)).astype("float32")
    model.embedding.embeddings.assign(table)
    return model


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _svd_table(table, rank):
    u, s, vt = np.linalg.svd(table.astype(np.float64), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vt[:rank]).astype("float32")


def _rank_r_reference(model, rank, ids):
    """`model`'s outputs with its table replaced by the rank-r SVD one, in a twin."""
    twin = GuideClassifier()
    twin(ids)
    twin.set_weights(model.get_weights())
    twin.embedding.embeddings.assign(_svd_table(_numpy(model.embedding.embeddings), rank))
    return _numpy(twin(ids))


def test_copy_model_constructs_a_guide_model_anew():
    model = _trained(GuideClassifier())
    model.dense.trainable = False
    ids = _ids(seed=2)

    copy = copy_model(model)

    assert type(copy) is GuideClassifier and copy.name == model.name
    assert [l.name for l in copy._flatten_layers()] == [l.name for l in model._flatten_layers()]
    assert not copy.dense.trainable and copy.embedding.trainable
    assert not {id(v) for v in copy.weights} & {id(v) for v in model.weights}
    np.testing.assert_array_equal(_numpy(copy(ids)), _numpy(model(ids)))


def test_factorize_embeddings_converts_a_guide_model_and_leaves_it_untouched():
    model = _trained(GuideClassifier())
    ids = _ids(seed=3)
    before = [_numpy(w) for w in model.weights]
    before_out = _numpy(model(ids))

    converted = factorize_embeddings(model, compression=0.5)

    assert type(converted) is GuideClassifier
    assert isinstance(converted.embedding, LowRankEmbedding)
    rank = converted.embedding.rank
    assert 1 <= rank and rank * (VOCAB + DIM) <= 0.5 * VOCAB * DIM
    expected = _rank_r_reference(model, rank, ids)
    np.testing.assert_allclose(_numpy(converted(ids)), expected, atol=1e-5)
    assert type(model.embedding) is keras.layers.Embedding
    for weight, saved in zip(model.weights, before):
        np.testing.assert_array_equal(_numpy(weight), saved)
    np.testing.assert_array_equal(_numpy(model(ids)), before_out)
    assert not {id(v) for v in converted.weights} & {id(v) for v in model.weights}


def test_compress_runs_on_a_guide_model():
    keras.utils.set_random_seed(0)
    model = _trained(GuideClassifier())
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(4)
    train = (_ids(32, seed=5), rng.integers(0, CLASSES, size=32))
    val = (_ids(16, seed=6), rng.integers(0, CLASSES, size=16))
    before = [_numpy(w) for w in model.weights]

    small = keras_lowrank.compress(
        model, train, val, size=0.5, epochs=1, candidates=1, verbose=0, seed=0
    )

    assert type(small) is GuideClassifier
    assert _numpy(small(_ids())).shape == (8, CLASSES)
    assert type(model.embedding) is keras.layers.Embedding
    for weight, saved in zip(model.weights, before):
        np.testing.assert_array_equal(_numpy(weight), saved)


def test_model_needing_init_arguments_without_get_config_gets_a_clear_error():
    model = NeedsTable(0.5)
    model(_ids())
    embedding = model.embedding

    with pytest.raises(ValueError, match=r"`__init__` needs argument\(s\) `bias`.*get_config") as info:
        factorize_embeddings(model, rank=2)

    assert "\n" not in str(info.value)
    assert "NeedsTable" in str(info.value)
    assert model.embedding is embedding


def test_model_with_init_arguments_and_get_config_still_converts():
    model = Configured(VOCAB, DIM, name="configured")
    _trained(model)
    ids = _ids(seed=7)
    table = _numpy(model.embedding.embeddings)

    converted = factorize_embeddings(model, rank=3)

    assert type(converted) is Configured and converted.name == "configured"
    assert isinstance(converted.embedding, LowRankEmbedding)
    dense = converted.dense
    expected = _numpy(dense(_svd_table(table, 3)[ids].mean(axis=1)))
    np.testing.assert_allclose(_numpy(converted(ids)), expected, atol=1e-5)
    assert type(model.embedding) is keras.layers.Embedding
