"""factorize_embeddings never lets the result share trainable state with the original.

Users keep the original as teacher and baseline: fitting the converted model
must leave the original's weights and outputs exactly as they were, for every
kind of model, wrappers (`TimeDistributed`) included; the class is kept and a
compiled model is compiled again with its own loss objects (a lambda too).
"""

import warnings

import numpy as np
import pytest

import keras

from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.surgery import factorize_embeddings

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, LENGTH = 40, 12, 6


def _ids(batch=16, seed=0):
    ids = np.random.default_rng(seed).integers(1, VOCAB, size=(batch, LENGTH))
    ids[:, -2:] = 0
    return ids.astype("int32")


def _labels(batch=16):
    return np.arange(batch) % 3


def _sequential():
    return keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32"),
            keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(3, name="logits"),
        ]
    )


def _functional():
    ids = keras.Input((LENGTH,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, DIM, name="embedding")(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(ids, keras.layers.Dense(3, name="logits")(x))


@keras.saving.register_keras_serializable(package="keras_lowrank_tests")
class SubclassedClassifier(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embed = keras.layers.Embedding(VOCAB, DIM, name="embed")
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.head = keras.layers.Dense(3, name="head")

    def call(self, ids):
        return self.head(self.pool(self.embed(ids)))


def _subclassed():
    model = SubclassedClassifier()
    model(_ids())
    return model


def _snapshot(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.weights]


@pytest.mark.parametrize("build", [_sequential, _functional, _subclassed])
def test_fitting_the_result_leaves_the_original_untouched(build):
    model = build()
    ids, labels = _ids(), _labels()
    before_weights = _snapshot(model)
    before_outputs = keras.ops.convert_to_numpy(model(ids))

    converted = factorize_embeddings(model, rank=3)
    assert type(converted) is type(model)
    assert converted is not model
    original_variables = {id(v) for v in model.weights}
    assert not original_variables & {id(v) for v in converted.weights}

    converted.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    converted.fit(ids, labels, epochs=2, verbose=0)

    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(ids)), before_outputs)
    for old, now in zip(before_weights, _snapshot(model)):
        np.testing.assert_array_equal(old, now)
    assert not any(isinstance(l, LowRankEmbedding) for l in model._flatten_layers())


def test_time_distributed_embedding_original_keeps_its_parameters():
    ids = keras.Input((2, LENGTH), dtype="int32")
    x = keras.layers.TimeDistributed(keras.layers.Embedding(VOCAB, DIM), name="wrapped")(ids)
    x = keras.layers.Reshape((2 * LENGTH * DIM,))(x)
    model = keras.Model(ids, keras.layers.Dense(3)(x))
    data = np.stack([_ids(4), _ids(4, seed=1)], axis=1)
    params, outputs = model.count_params(), keras.ops.convert_to_numpy(model(data))

    converted = factorize_embeddings(model, rank=3)

    assert model.count_params() == params
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(data)), outputs)
    assert converted.count_params() < params
    assert isinstance(converted.get_layer("wrapped").layer, LowRankEmbedding)


def test_lambda_loss_is_carried_over_by_object():
    model = _sequential()
    loss = lambda y, p: keras.ops.mean(  # noqa: E731 - the point of the test
        keras.losses.sparse_categorical_crossentropy(y, p, from_logits=True)
    )
    model.compile(keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])

    converted = factorize_embeddings(model, rank=3)

    assert converted.compiled and converted.loss is loss
    assert converted.optimizer is not model.optimizer
    logs = converted.fit(_ids(), _labels(), epochs=1, verbose=0).history
    assert "accuracy" in logs and np.isfinite(logs["loss"][0])


def test_dropped_regularizer_and_constraint_are_named_in_a_warning():
    model = keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32"),
            keras.layers.Embedding(
                VOCAB, DIM, embeddings_regularizer="l2", embeddings_constraint="non_neg", name="emb"
            ),
            keras.layers.GlobalAveragePooling1D(),
        ]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        factorize_embeddings(model, rank=2)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("embeddings_regularizer" in m for m in messages)
    assert any("embeddings_constraint" in m for m in messages)


@pytest.mark.parametrize("names", [{"embedding": 1}, {"embedding"}])
def test_layer_names_must_be_a_name_or_a_list(names):
    with pytest.raises(ValueError, match="layer_names"):
        factorize_embeddings(_sequential(), rank=2, layer_names=names)


class UnregisteredClassifier(keras.Model):
    """Defined in a script, never registered with Keras: copied from its own config."""

    def __init__(self, width=3, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.embed = keras.layers.Embedding(VOCAB, DIM, name="embed")
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.head = keras.layers.Dense(width, name="head")

    def call(self, ids):
        return self.head(self.pool(self.embed(ids)))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


def test_unregistered_subclassed_model_is_copied_not_changed():
    model = UnregisteredClassifier(width=4)
    ids = _ids()
    model(ids)
    before = keras.ops.convert_to_numpy(model(ids))
    converted = factorize_embeddings(model, rank=3)
    assert type(converted) is UnregisteredClassifier and converted is not model
    assert converted.width == 4 and isinstance(converted.embed, LowRankEmbedding)
    assert type(model.embed) is keras.layers.Embedding
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(ids)), before)
