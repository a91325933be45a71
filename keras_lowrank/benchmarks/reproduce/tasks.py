"""A task of the reproduction: one dataset, encoded, with its initial table.

`prepare_task` loads a dataset (bundled name, data folder or tfds name),
builds the vocabulary from the training split only, encodes the three splits
and builds the initial embedding table from the chosen vectors (`glove50`,
`learned300` or a GloVe/word2vec text file). `build_model` makes one of the
paper's classifiers for it. This module must not train or compress.
"""

import dataclasses
import os

import numpy as np

LEARNED_PREFIX = "learned"


@dataclasses.dataclass
class Task:
    """An encoded dataset plus its initial embedding table.

    Attributes:
        dataset: the dataset name as given (key of the records).
        vectors: the vectors name as given (key of the records).
        vocabulary: the `keras_lowrank.data.Vocabulary` of the train split.
        train, dev, test: `(x int32 [n, length], y int64 [n])`.
        num_classes: number of labels.
        embedding_dim: width of the table.
        initial_table: float32 `[vocab, dim]` pretrained table, or `None`
            for a table learned from scratch.
        counts: training-token count of every id (row weights, pruning).
        coverage: share of training tokens whose word has a pretrained
            vector (`None` for learned tables).
    """

    dataset: str
    vectors: str
    vocabulary: object
    train: tuple
    dev: tuple
    test: tuple
    num_classes: int
    embedding_dim: int
    initial_table: object
    counts: np.ndarray
    coverage: object = None

    @property
    def vocab_size(self):
        """Rows of the embedding table (padding and OOV included)."""
        return self.vocabulary.size


_DATA_CACHE = {}


def load_data(dataset):
    """Loads (and caches in memory) a `TextClassificationData`."""
    if dataset not in _DATA_CACHE:
        from keras_lowrank.data import load_dataset

        _DATA_CACHE[dataset] = load_dataset(dataset)
    return _DATA_CACHE[dataset]


def _subsample(texts, labels, size, seed):
    if size is None or size >= len(labels):
        return texts, labels
    # A seeded subsample (CI runs): the same examples for every method.
    order = np.random.default_rng(seed).permutation(len(labels))[:size]
    order.sort()
    return [texts[i] for i in order], labels[order]


def prepare_task(dataset, vectors, *, sequence_length, max_train=None, min_count=1):
    """Builds the encoded `Task` of a dataset with a kind of vectors.

    Args:
        dataset: bundled dataset name, data folder or tfds name.
        vectors: `"glove50"`, `"learned<dim>"` (e.g. `"learned300"`: a
            table trained from scratch) or a path to a GloVe/word2vec text
            file.
        sequence_length: tokens kept per text.
        max_train: optional size of a seeded training subsample.
        min_count: minimum training count of a vocabulary word.

    Returns:
        A `Task`.
    """
    from keras_lowrank.data.vocabulary import build_vocabulary

    data = load_data(dataset)
    train_texts, train_labels = _subsample(
        data.texts("train"), data.labels("train"), max_train, seed=1234
    )
    vocabulary = build_vocabulary(train_texts, min_count=min_count)
    encode = lambda texts: vocabulary.encode(texts, sequence_length=sequence_length)  # noqa: E731
    train = (encode(train_texts), np.asarray(train_labels, dtype=np.int64))
    dev = (encode(data.texts("dev")), np.asarray(data.labels("dev"), dtype=np.int64))
    test = (encode(data.texts("test")), np.asarray(data.labels("test"), dtype=np.int64))
    # Counts from the encoded training split (what the model actually sees,
    # after truncation), padding excluded: the row weights and the pruning
    # order.
    counts = np.bincount(train[0].reshape(-1), minlength=vocabulary.size).astype(np.int64)
    counts[0] = 0

    table, coverage, dim = _initial_table(vocabulary, vectors)
    return Task(
        dataset=dataset,
        vectors=vectors,
        vocabulary=vocabulary,
        train=train,
        dev=dev,
        test=test,
        num_classes=data.num_classes,
        embedding_dim=dim,
        initial_table=table,
        counts=counts,
        coverage=coverage,
    )


def _initial_table(vocabulary, vectors):
    from keras_lowrank.data.vectors import embedding_matrix

    if vectors.startswith(LEARNED_PREFIX) and vectors[len(LEARNED_PREFIX):].isdigit():
        return None, None, int(vectors[len(LEARNED_PREFIX):])
    if vectors == "glove50":
        from keras_lowrank.data.vectors import load_glove_6b_50d

        word_vectors = load_glove_6b_50d(words=vocabulary.tokens)
    elif os.path.isfile(vectors):
        from keras_lowrank.data.vectors import load_word_vectors

        word_vectors = load_word_vectors(vectors, words=vocabulary.tokens)
    else:
        raise ValueError(
            "Expected `vectors` to be 'glove50', 'learned<dim>' (e.g. "
            f"'learned300') or an existing vector file, received: vectors={vectors!r}"
        )
    table, coverage = embedding_matrix(vocabulary, word_vectors, seed=0)
    return table, round(float(coverage.token_coverage), 4), int(table.shape[1])


def build_model(task, model_name, *, vocab_size=None, table=None, seed_table=True):
    """Builds one of the paper's classifiers for `task` (untrained).

    Args:
        task: the `Task`.
        model_name: `"dan"`, `"lstm"` or `"cnn"`.
        vocab_size: rows of the embedding (defaults to the task's).
        table: initial table (defaults to the task's pretrained table when
            `seed_table` is true, random otherwise).

    Returns:
        A built `keras.Model` whose embedding layer is named `"embedding"`.
    """
    from keras_lowrank import models

    builders = {
        "dan": models.dan_classifier,
        "lstm": models.lstm_classifier,
        "cnn": models.cnn_classifier,
    }
    if table is None and seed_table:
        table = task.initial_table
    return builders[model_name](
        vocab_size if vocab_size is not None else task.vocab_size,
        task.num_classes,
        embedding_dim=None if table is not None else task.embedding_dim,
        embeddings=table,
        sequence_length=task.train[0].shape[1],
    )
