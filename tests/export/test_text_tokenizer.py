"""`TextTokenizer` gives the ids Keras' `TextVectorization` gives, without TensorFlow.

Reference: the layer itself, adapted on the same corpus, on strings chosen
to hit each rule (ASCII-only lowercasing, the punctuation class, ASCII
whitespace, n-gram order, OOV, padding and truncation).
"""

import itertools

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_lowrank.export import TextTokenizer  # noqa: E402

CORPUS = [
    "the cat sat on the mat",
    "The dog ate my homework!",
    "naïve café, ÉCOLE and école",
    "a-b c.d e_f [unk] 42 3.14",
    "tab\tseparated\nlines here",
    "x y z x y z x y",
]
TEXTS = [
    "The CAT sat",
    "ÉCOLE école Café",
    "a-b  c.d\te_f",
    "no\u00a0break space and\u2003em space",
    "",
    "   ",
    "[UNK] [unk] unknownword",
    "x y z x y z x y z x y z x y z",
    "dog's homework? yes: 100%",
]


@pytest.mark.parametrize(
    "standardize, split, ngrams, length",
    [
        *[(s, "whitespace", None, 6) for s in (None, "lower", "strip_punctuation", "lower_and_strip_punctuation")],
        ("lower_and_strip_punctuation", "character", None, 10),
        (None, None, None, 1),
        ("lower_and_strip_punctuation", "whitespace", 2, 12),
        ("lower", "whitespace", (1, 3), None),
        ("lower_and_strip_punctuation", "whitespace", None, None),
    ],
)
def test_ids_equal_the_layers(standardize, split, ngrams, length):
    layer = keras.layers.TextVectorization(
        standardize=standardize, split=split, ngrams=ngrams, output_sequence_length=length
    )
    layer.adapt(CORPUS)
    tokenizer = TextTokenizer.from_layer(layer)
    # One text per row, the shape a model's `Input(shape=(1,))` gives it.
    expected = keras.ops.convert_to_numpy(layer(tf.constant(TEXTS)[:, None]))
    got = tokenizer.tokenize(TEXTS)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)
    # One text at a time, as a phone runs it (a batch of one pads to itself).
    for text in TEXTS:
        one = keras.ops.convert_to_numpy(layer(tf.constant([[text]])))
        np.testing.assert_array_equal(tokenizer.tokenize([text]), one)


def test_json_round_trip_keeps_every_setting():
    layer = keras.layers.TextVectorization(ngrams=2, output_sequence_length=9)
    layer.adapt(CORPUS)
    tokenizer = TextTokenizer.from_layer(layer)
    again = TextTokenizer.from_json(tokenizer.to_json())
    assert again == tokenizer
    np.testing.assert_array_equal(again.tokenize(TEXTS), tokenizer.tokenize(TEXTS))


def test_bad_settings_and_documents_are_refused():
    with pytest.raises(ValueError, match="standardize"):
        TextTokenizer(vocabulary=("", "[UNK]"), standardize="upper")
    with pytest.raises(ValueError, match="sequence_length"):
        TextTokenizer(vocabulary=("", "[UNK]"), sequence_length=0)
    with pytest.raises(ValueError, match="format"):
        TextTokenizer.from_json('{"vocabulary": []}')
    with pytest.raises(ValueError, match="parse"):
        TextTokenizer.from_json("not json")
    layer = keras.layers.TextVectorization(output_mode="multi_hot")
    layer.adapt(CORPUS)
    with pytest.raises(ValueError, match="output_mode='multi_hot'"):
        TextTokenizer.from_layer(layer)


def test_tokens_follow_keras_ngram_order():
    tokenizer = TextTokenizer(vocabulary=("", "[UNK]"), standardize=None, ngrams=(1, 2))
    assert tokenizer.tokens("a b c") == ["a", "b", "c", "a b", "b c"]
    assert list(itertools.islice(tokenizer.tokens("a"), 5)) == ["a"]
