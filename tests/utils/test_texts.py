"""A batch of texts is recognized and read one way for every caller."""

import numpy as np
import pytest

from keras_lowrank.utils import texts

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize("batch", [
    ["a b", "c"],
    ("a b", "c"),
    np.array(["a b", "c"]),
    np.array([b"a b", b"c"]),
    np.array([["a b"], ["c"]], dtype=object),
    [["a b"], ["c"]],
])
def test_every_shape_of_a_batch_reads_as_the_same_list(batch):
    assert texts.is_text_batch(batch)
    assert texts.text_list(batch, "probe") == ["a b", "c"]


@pytest.mark.parametrize("data", [
    np.zeros((4, 3), dtype="int32"),
    (np.zeros((4, 3)), np.zeros(4)),  # a labeled pair of unequal shapes stays a pair
    [], (), np.array([], dtype=object), None, "one text", {"token_ids": np.zeros((2, 3))},
])
def test_what_is_not_a_batch_of_texts(data):
    assert not texts.is_text_batch(data)


def test_refusals_name_the_argument_and_echo_what_is_wrong():
    with pytest.raises(ValueError, match=r"`probe` to be a non-empty batch.*shape \(0,\)"):
        texts.text_list([], "probe")
    assert texts.text_list([], "texts", allow_empty=True) == []
    with pytest.raises(ValueError, match=r"`probe` .*shape \(2, 2\)"):
        texts.text_list([["a", "b"], ["c", "d"]], "probe")
    with pytest.raises(ValueError, match=r"`texts` to hold texts .* 3"):
        texts.text_list(["a", 3], "texts")
    assert texts.text_list(["caf\u00e9".encode("utf-8")], "texts") == ["caf\u00e9"]
