"""End to end on real data: train, factorize at 90%, fine-tune with CALR, recover.

A small DAN intent classifier is trained on the bundled SNIPS data (real
voice-assistant queries), its embedding is replaced by the truncated SVD
factors at 90% compression, and the whole network is fine-tuned with the
cyclically annealed learning rate. The test asserts behaviour, not a
benchmark number: the factorized model right after surgery equals the model
holding the rank-r numpy SVD of the trained table, the embedding really
shrinks, and fine-tuning moves the factors and does not lose what the
surgery kept (accuracy after fine-tune >= accuracy right after surgery,
with a margin for noise of one test example per hundred).
"""

import keras
import numpy as np
import pytest

import keras_lowrank
from keras_lowrank.data import build_vocabulary, load_dataset
from keras_lowrank.models import dan_classifier

SEQUENCE_LENGTH = 24
EMBEDDING_DIM = 64
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def snips():
    data = load_dataset("snips")
    vocabulary = build_vocabulary(data.texts("train"), max_tokens=4000)
    def encode(split):
        return vocabulary.encode(data.texts(split), SEQUENCE_LENGTH), data.labels(split)
    # A subset of train keeps the run short; dev and test are the full real splits.
    x_train, y_train = encode("train")
    rng = np.random.default_rng(0)
    keep = rng.permutation(len(x_train))[:4000]
    return {
        "train": (x_train[keep], y_train[keep]),
        "test": encode("test"),
        "vocab_size": vocabulary.size,
        "num_classes": data.num_classes,
    }


def _accuracy(model, x, y):
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def test_train_factorize_fine_tune_recovers(snips):
    keras.utils.set_random_seed(0)
    x_train, y_train = snips["train"]
    x_test, y_test = snips["test"]
    model = dan_classifier(
        snips["vocab_size"], snips["num_classes"], embedding_dim=EMBEDDING_DIM,
        hidden_units=(64,), sequence_length=SEQUENCE_LENGTH,
    )
    model.compile(keras.optimizers.Adam(3e-3), LOSS)
    model.fit(x_train, y_train, epochs=4, batch_size=64, verbose=0)
    full_accuracy = _accuracy(model, x_test, y_test)
    # The uncompressed model learned the task (7 balanced intents: chance ~ 0.14).
    assert full_accuracy > 0.8

    table = np.asarray(model.get_layer("embedding").embeddings)
    small, report = keras_lowrank.factorize_embeddings(
        model, compression=0.9, return_report=True
    )
    layer = small.get_layer("embedding")
    rank = keras_lowrank.rank_for_compression(*table.shape, 0.9)
    assert isinstance(layer, keras_lowrank.LowRankEmbedding)
    assert layer.rank == rank
    assert rank * sum(table.shape) <= 0.1 * table.size
    assert "embedding" in str(report)

    # Right after surgery: exactly the model holding the rank-r numpy SVD table.
    u, s, vt = np.linalg.svd(table.astype(np.float64), full_matrices=False)
    best = (u[:, :rank] * s[:rank]) @ vt[:rank]
    np.testing.assert_allclose(np.asarray(layer.embeddings), best, atol=1e-4)
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    reference.get_layer("embedding").embeddings.assign(best.astype(np.float32))
    np.testing.assert_allclose(
        small.predict(x_test, verbose=0), reference.predict(x_test, verbose=0), atol=1e-3
    )
    after_surgery = _accuracy(small, x_test, y_test)

    steps_per_epoch = int(np.ceil(len(x_train) / 64))
    schedule = keras_lowrank.CyclicallyAnnealedLearningRate(
        1e-4, 3e-3, step_size=steps_per_epoch // 2, decay=0.5
    )
    small.compile(keras.optimizers.Adam(schedule), LOSS)
    lookup_before = np.asarray(layer.lookup).copy()
    projection_before = np.asarray(layer.projection).copy()
    small.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
    fine_tuned = _accuracy(small, x_test, y_test)

    assert not np.allclose(np.asarray(layer.lookup), lookup_before)
    assert not np.allclose(np.asarray(layer.projection), projection_before)
    assert fine_tuned >= after_surgery - 0.01
    # Recovered: within a few points of the uncompressed model on real test data.
    assert fine_tuned >= full_accuracy - 0.05
