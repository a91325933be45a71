"""compress(): what it refuses up front, and that it never returns a diverged model.

Tiny models and data keep each call to seconds; most calls here stop at an
argument or data check before anything trains.
"""

import math

import numpy as np
import pytest

import keras

import keras_lowrank
from keras_lowrank.compression import prune_vocabulary

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, LENGTH, CLASSES = 60, 8, 6, 3
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
QUICK = {"epochs": 1, "candidates": 1, "verbose": 0, "seed": 0}


def _data(n, seed, vocab=VOCAB):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(n, LENGTH)).astype("int32")
    labels = rng.integers(0, CLASSES, size=n)
    ids[:, 0] = (2 + labels) % vocab
    return ids, labels


def _sequential(vocab=VOCAB, dim=DIM):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32"),
            keras.layers.Embedding(vocab, dim, name="embedding"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(CLASSES),
        ],
        name="dan",
    )
    model.compile("adam", LOSS, metrics=["accuracy"])
    return model


def _shared_table_model():
    """A Functional model whose one table looks up the ids of two inputs."""
    keras.utils.set_random_seed(0)
    first = keras.Input((LENGTH,), dtype="int32", name="first")
    second = keras.Input((LENGTH,), dtype="int32", name="second")
    table = keras.layers.Embedding(VOCAB, DIM, name="embedding")
    pool = keras.layers.GlobalAveragePooling1D()
    joined = keras.layers.Concatenate()([pool(table(first)), pool(table(second))])
    model = keras.Model([first, second], keras.layers.Dense(CLASSES)(joined), name="pair")
    model.compile("adam", LOSS, metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def task():
    model = _sequential()
    train, val = _data(96, 1), _data(48, 2)
    model.fit(*train, epochs=1, verbose=0)
    return model, train, val


def _weights(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.weights]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("which", ["train_data", "validation_data"])
def test_non_finite_sample_weights_are_refused(task, which, bad):
    model, train, val = task
    data = {"train_data": train, "validation_data": val}
    x, y = data[which]
    weights = np.ones(len(y))
    weights[4] = bad
    data[which] = (x, y, weights)
    with pytest.raises(ValueError, match=rf"sample weights in `{which}`.*{bad}.* example 4"):
        keras_lowrank.compress(model, data["train_data"], data["validation_data"], size=0.3, **QUICK)


def test_a_diverged_fine_tune_keeps_its_start_and_says_so(task):
    model, train, val = task
    before = _weights(model)
    options = dict(QUICK, candidates=2)
    # Adam steps by about the rate: 1e38 overflows float32 within a few
    # steps in every recipe (1e30 leaves some with huge but finite weights).
    small, report = keras_lowrank.compress(model, train, val, size=0.3, learning_rate=1e38,
                                           return_report=True, **options)
    # The independent reference: the same recipes built and never fine-tuned.
    start, start_report = keras_lowrank.compress(model, train, val, size=0.3, return_report=True,
                                                 **dict(options, epochs=0))
    assert report.recipe == start_report.recipe and report.score == pytest.approx(start_report.score)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(small(val[0])),
                               keras.ops.convert_to_numpy(start(val[0])), rtol=1e-5, atol=1e-6)
    assert all(c.diverged_at is not None and c.best_epoch == 0 for c in report.candidates)
    assert any("diverged" in note and "learning_rate" in note for note in report.notes)
    assert "diverged at" in str(report)
    assert all(np.all(np.isfinite(w)) for w in small.get_weights() if np.asarray(w).dtype.kind == "f")
    for old, now in zip(before, model.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(now))


def _empty(kind, data):
    if kind == "arrays":
        return data[0][:0], data[1][:0]
    tf = pytest.importorskip("tensorflow")
    return tf.data.Dataset.from_tensor_slices(data).take(0).batch(8)


@pytest.mark.parametrize("kind", ["arrays", "dataset"])
@pytest.mark.parametrize("which", ["train_data", "validation_data"])
def test_empty_data_is_refused(task, which, kind):
    model, train, val = task
    data = {"train_data": train, "validation_data": val}
    data[which] = _empty(kind, data[which])
    with pytest.raises(ValueError, match=f"`{which}` holds no examples"):
        keras_lowrank.compress(model, data["train_data"], data["validation_data"], size=0.3, **QUICK)


def test_ids_of_a_table_shared_by_two_inputs_are_all_read():
    model = _shared_table_model()
    (x, y), (x_val, y_val) = _data(64, 1), _data(32, 2)
    second = x.copy()
    second[5, 2] = VOCAB + 4  # only the second input's call sees it
    with pytest.raises(ValueError, match=rf"`train_data` holds id {VOCAB + 4} for embedding 'embedding'"):
        keras_lowrank.compress(model, ((x, second), y), ((x_val, x_val), y_val), size=0.3, **QUICK)
    second_val = x_val.copy()
    second_val[1, 1] = VOCAB
    with pytest.raises(ValueError, match=rf"`validation_data` holds id {VOCAB} for embedding 'embedding'"):
        keras_lowrank.compress(model, ((x, x), y), ((x_val, second_val), y_val), size=0.3, **QUICK)


def test_a_table_shared_by_two_inputs_is_compressed():
    model = _shared_table_model()
    (x, y), (x_val, y_val) = _data(64, 1), _data(32, 2)
    before = _weights(model)
    small, report = keras_lowrank.compress(model, ((x, x[:, ::-1]), y), ((x_val, x_val), y_val), size=0.3,
                                           return_report=True, **QUICK)
    assert report.embedding_bytes <= report.budget_bytes
    assert not [note for note in report.notes if "unavailable" in note or "Error" in note]
    assert small.predict((x_val, x_val), verbose=0).shape == (32, CLASSES)
    for old, now in zip(before, model.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(now))


@pytest.mark.parametrize(
    "options",
    [
        {"prune": "False"},
        {"prune": 1},
        {"learning_rate": -1.0},
        {"learning_rate": math.nan},
        {"learning_rate": "1e-3"},
        {"temperature": 0.0},
        {"temperature": math.inf},
        {"alpha": 1.5},
        {"alpha": True},
        {"epochs": 1.0},
        {"candidates": "2"},
        {"batch_size": True},
        {"seed": -1},
        {"seed": 1.5},
        {"oov_id": 1.0},
        {"verbose": 1.0},
        {"verbose": 3},
        {"monitor": 3},
        {"monitor": ""},
        {"metrics": "accuracy"},
        {"loss": 3},
        {"loss": "no_such_loss"},
        {"storages": "int8"},
        {"storages": ("int8", 4)},
        {"return_report": "yes"},
        {"layer_names": 3},
    ],
    ids=lambda options: "-".join(f"{k}={v!r}" for k, v in options.items()),
)
def test_every_option_is_checked(task, options):
    model, train, val = task
    (name,) = options
    with pytest.raises(ValueError, match=rf"`{name}`.*received: {name}="):
        keras_lowrank.compress(model, train, val, size=0.3, **dict(QUICK, **options))


class _Endless(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    @property
    def num_batches(self):
        return None

    def __getitem__(self, index):
        return self.x[:16], self.y[:16]


@pytest.mark.parametrize("which", ["train_data", "validation_data"])
def test_infinite_datasets_are_refused(task, which):
    tf = pytest.importorskip("tensorflow")
    model, train, val = task
    data = {"train_data": train, "validation_data": val}
    data[which] = tf.data.Dataset.from_tensor_slices(data[which]).batch(16).repeat()
    with pytest.raises(ValueError, match=rf"finite `{which}`.*take\(n\)"):
        keras_lowrank.compress(model, data["train_data"], data["validation_data"], size=0.3, **QUICK)
    data[which] = _Endless(*(train if which == "train_data" else val))
    with pytest.raises(ValueError, match=rf"finite `{which}`"):
        keras_lowrank.compress(model, data["train_data"], data["validation_data"], size=0.3, **QUICK)


@pytest.mark.parametrize(
    "which, label, shown",
    [
        ("train_data", CLASSES, str(CLASSES)),
        ("train_data", -1, "-1"),
        ("train_data", np.nan, "nan"),
        ("validation_data", CLASSES + 4, str(CLASSES + 4)),
        ("validation_data", np.nan, "nan"),
    ],
)
def test_bad_labels_are_named(task, which, label, shown):
    model, train, val = task
    data = {"train_data": train, "validation_data": val}
    x, y = data[which]
    y = y.astype("float64")
    y[7] = label
    data[which] = (x, y)
    with pytest.raises(ValueError, match=rf"`{which}`.*label {shown}"):
        keras_lowrank.compress(model, data["train_data"], data["validation_data"], size=0.3, **QUICK)


def test_bad_labels_in_a_dataset_are_named(task):
    tf = pytest.importorskip("tensorflow")
    model, train, val = task
    y = val[1].copy()
    y[30] = CLASSES
    val_ds = tf.data.Dataset.from_tensor_slices((val[0], y)).batch(16)
    with pytest.raises(ValueError, match=rf"`validation_data` holds label {CLASSES}"):
        keras_lowrank.compress(model, train, val_ds, size=0.3, **QUICK)


def test_validation_ids_outside_the_vocabulary_are_named(task):
    model, train, val = task
    x = val[0].copy()
    x[3, 1] = VOCAB + 2
    with pytest.raises(ValueError, match=rf"`validation_data` holds id {VOCAB + 2} .*\[0, {VOCAB}\)"):
        keras_lowrank.compress(model, train, (x, val[1]), size=0.3, **QUICK)


def test_a_tiny_vocabulary_is_planned_without_pruning():
    vocab = 5
    model = _sequential(vocab)
    train, val = _data(48, 1, vocab), _data(24, 2, vocab)
    with pytest.raises(ValueError, match=r"smallest feasible is [\d,]+ bytes, size=0\.\d+"):
        keras_lowrank.compress(model, train, val, size=0.3, **QUICK)
    small, report = keras_lowrank.compress(model, train, val, size=0.5, return_report=True, **QUICK)
    assert report.embedding_bytes <= report.budget_bytes
    assert {c.recipe["embedding"]["family"] for c in report.candidates} == {"low-rank"}


def test_a_table_too_small_for_any_recipe_is_named():
    model = _sequential(vocab=2, dim=2)
    train, val = _data(32, 1, 2), _data(16, 2, 2)
    # Named, so not skipped as a table no rank saves anything on.
    with pytest.raises(ValueError, match=r"'embedding' \(2x2\) too small to compress"):
        keras_lowrank.compress(model, train, val, size=0.5, layer_names="embedding", **QUICK)


def test_a_multi_output_model_is_refused():
    keras.utils.set_random_seed(0)
    ids = keras.Input((LENGTH,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, DIM, name="embedding")(ids))
    model = keras.Model(ids, [keras.layers.Dense(CLASSES)(pooled), keras.layers.Dense(2)(pooled)], name="two")
    model.compile("adam", [LOSS, LOSS])
    (x, y), (x_val, y_val) = _data(32, 1), _data(16, 2)
    with pytest.raises(ValueError, match="single output.*'two' with 2 outputs"):
        keras_lowrank.compress(model, (x, (y, y % 2)), (x_val, (y_val, y_val % 2)), size=0.3, **QUICK)


def test_an_already_compressed_model_is_named(task):
    model, train, val = task
    factorized = keras_lowrank.factorize_embeddings(model, rank=2)
    with pytest.raises(ValueError, match=r"already compressed: 'embedding' \(LowRankEmbedding, rank 2 float32\)"):
        keras_lowrank.compress(factorized, train, val, size=0.3, **QUICK)
    pruned = prune_vocabulary(model, 20)
    with pytest.raises(ValueError, match=r"already compressed: 'embedding' \(PrunedEmbedding, dense float32, 20/"):
        keras_lowrank.compress(pruned, train, val, size=0.3, **QUICK)


def test_ragged_inputs_are_refused(task):
    tf = pytest.importorskip("tensorflow")
    model, train, val = task
    ragged = tf.ragged.constant([list(row[: 2 + i % 4]) for i, row in enumerate(train[0])])
    with pytest.raises(ValueError, match="`train_data`.*ragged"):
        keras_lowrank.compress(model, (ragged, train[1]), val, size=0.3, **QUICK)
    dataset = tf.data.Dataset.from_tensor_slices((ragged, train[1])).batch(16)
    with pytest.raises(ValueError, match="`train_data`.*ragged"):
        keras_lowrank.compress(model, dataset, val, size=0.3, **QUICK)


def test_iterators_are_refused(task):
    model, train, val = task

    def batches():
        for start in range(0, len(train[1]), 16):
            yield train[0][start : start + 16], train[1][start : start + 16]

    with pytest.raises(ValueError, match="`train_data` as arrays, a tf.data.Dataset or a keras.utils.PyDataset, received an iterator"):
        keras_lowrank.compress(model, batches(), val, size=0.3, **QUICK)
    with pytest.raises(ValueError, match="`validation_data`.*iterator"):
        keras_lowrank.compress(model, train, iter([val]), size=0.3, **QUICK)
