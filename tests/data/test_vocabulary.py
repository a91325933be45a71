"""Tokenizer and vocabulary: ordering, counts, encoding, pruning, files."""

import numpy as np
import pytest

from keras_lowrank.data.vocabulary import OOV_ID
from keras_lowrank.data.vocabulary import Vocabulary
from keras_lowrank.data.vocabulary import build_vocabulary
from keras_lowrank.data.vocabulary import tokenize

pytestmark = pytest.mark.backend_agnostic


def test_tokenize():
    assert tokenize("Don't PANIC: it's 3.5 well-made!") == [
        "do", "n't", "panic", ":", "it", "'s", "3.5", "well-made", "!"
    ]
    assert tokenize("it 's a film , does n't work .") == [
        "it", "'s", "a", "film", ",", "does", "n't", "work", "."
    ]
    assert tokenize("a\x85b") == ["a", "b"]


def test_order_counts_and_ties():
    texts = ["b a c", "c b d", "b"]
    vocabulary = build_vocabulary(texts)
    assert vocabulary.tokens == ["[PAD]", "[UNK]", "b", "c", "a", "d"]
    assert vocabulary.counts.tolist() == [0, 0, 3, 2, 1, 1]
    # Text order does not matter.
    assert build_vocabulary(texts[::-1]).tokens == vocabulary.tokens


def test_max_tokens_and_min_count_count_oov():
    texts = ["a a a b b c"]
    vocabulary = build_vocabulary(texts, max_tokens=3)
    assert vocabulary.tokens == ["[PAD]", "[UNK]", "a"]
    assert vocabulary.counts.tolist() == [0, 3, 3]
    assert build_vocabulary(texts, min_count=2).tokens[2:] == ["a", "b"]
    with pytest.raises(ValueError, match="max_tokens"):
        build_vocabulary(texts, max_tokens=1)
    with pytest.raises(ValueError, match="min_count"):
        build_vocabulary(texts, min_count=0)


def test_encode_pads_truncates_and_maps_oov():
    vocabulary = build_vocabulary(["the cat sat", "the dog"])
    ids = vocabulary.encode(["the cat flew", "dog", "the the the the the"], sequence_length=4)
    assert ids.dtype == np.int32
    the, cat, dog = (vocabulary.token_to_id(t) for t in ("the", "cat", "dog"))
    np.testing.assert_array_equal(
        ids, [[the, cat, OOV_ID, 0], [dog, 0, 0, 0], [the, the, the, the]]
    )
    assert vocabulary.encode(["the cat", ""]).shape == (2, 2)
    assert vocabulary.decode(ids[1]) == ["dog"]


def test_prune():
    vocabulary = build_vocabulary(["a a a b b c d"])
    pruned, id_map = vocabulary.prune(4)
    assert pruned.tokens == ["[PAD]", "[UNK]", "a", "b"]
    assert pruned.counts.tolist() == [0, 2, 3, 2]
    assert id_map.tolist() == [0, 1, 2, 3, 1, 1]
    old = vocabulary.encode(["a d c b"])
    np.testing.assert_array_equal(id_map[old], pruned.encode(["a d c b"]))
    assert int(pruned.counts.sum()) == int(vocabulary.counts.sum())


def test_save_load_roundtrip(tmp_path):
    vocabulary = build_vocabulary(["héllo wörld héllo ."], max_tokens=3)
    path = tmp_path / "vocab.txt"
    vocabulary.save(path)
    loaded = Vocabulary.load(path)
    assert loaded.tokens == vocabulary.tokens
    np.testing.assert_array_equal(loaded.counts, vocabulary.counts)
    (tmp_path / "bad.txt").write_text("a\t1\n")
    with pytest.raises(ValueError, match="not a keras_lowrank vocabulary"):
        Vocabulary.load(tmp_path / "bad.txt")
