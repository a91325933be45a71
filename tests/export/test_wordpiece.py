"""The reference WordPiece tokenizer, rule by rule, against ids written out by hand.

Parity with KerasHub's own preprocessor is checked where KerasHub is
installed (tests/export/test_keras_hub_export.py, tests/models/test_minilm_loader.py).
"""

import pytest

from keras_lowrank.export.wordpiece import WordPieceTokenizer

pytestmark = pytest.mark.backend_agnostic

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "aff", "book", "##s", "!", "cafe", "中"]
IDS = {token: index for index, token in enumerate(VOCAB)}


def _tokenizer(length=8, **kwargs):
    return WordPieceTokenizer(VOCAB, length, start_id=2, end_id=3, pad_id=0, **kwargs)


def test_longest_match_first_with_suffix_pieces_and_unknown_words():
    tokenizer = _tokenizer()
    # "unaffable": "un" (not "una..."), then "##aff", then "##able"; "books": "book" "##s";
    # "unbook" cannot be covered past "un": the whole word is unknown.
    assert tokenizer.pieces("unaffable books unbook") == ["un", "##aff", "##able", "book", "##s", "[UNK]"]
    assert tokenizer.pieces("b" * 101) == ["[UNK]"]  # over 100 bytes


def test_splitting_accents_case_and_packing():
    tokenizer = _tokenizer(lowercase=True, strip_accents=True)
    assert tokenizer.words("Café!中x\u200bBOOKS\tun") == ["cafe", "!", "中", "x", "books", "un"]
    ids = tokenizer.tokenize(["Café! BOOKS", "unaffable unaffable unaffable"])
    assert ids.tolist() == [
        [2, IDS["cafe"], IDS["!"], IDS["book"], IDS["##s"], 3, 0, 0],
        # 6 pieces room (8 - [CLS] - [SEP]): truncated after the second "un ##aff ##able".
        [2, 4, 5, 6, 4, 5, 6, 3],
    ]
    assert ids.dtype == "int32"
    # Without lowercasing and accent stripping the same text is unknown words.
    assert _tokenizer().pieces("Café BOOKS") == ["[UNK]", "[UNK]"]


def test_settings_of_other_tokenizers_are_refused_by_name():
    settings = {"tokenizer": "BertTokenizer", "vocabulary": VOCAB, "sequence_length": 8, "pad_id": 0,
                "config": {"lowercase": True}, "special_token_ids": {"cls_token_id": 2, "sep_token_id": 3}}
    assert WordPieceTokenizer.from_settings(settings).tokenize(["book"]).tolist() == [[2, 8, 3, 0, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="'GPT2Tokenizer'"):
        WordPieceTokenizer.from_settings({**settings, "tokenizer": "GPT2Tokenizer"})
    with pytest.raises(ValueError, match="start and end tokens"):
        WordPieceTokenizer.from_settings({**settings, "special_token_ids": {}})
    with pytest.raises(ValueError, match="special tokens"):
        WordPieceTokenizer.from_settings({**settings, "config": {"special_tokens_in_strings": True}})
    with pytest.raises(ValueError, match="sequence_length=1"):
        _tokenizer(length=1)


def test_the_files_wordpiece_entry_decides_over_the_class_name():
    settings = {"tokenizer": "MyTokenizer", "wordpiece": True, "vocabulary": VOCAB, "sequence_length": 8,
                "config": {}, "special_token_ids": {"cls_token_id": 2, "sep_token_id": 3}}
    assert WordPieceTokenizer.from_settings(settings).pieces("books") == ["book", "##s"]
    with pytest.raises(ValueError, match="'BertTokenizer'"):
        WordPieceTokenizer.from_settings({**settings, "tokenizer": "BertTokenizer", "wordpiece": False})
