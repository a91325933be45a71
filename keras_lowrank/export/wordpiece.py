"""A KerasHub WordPiece tokenizer in plain Python, from the settings a task's file carries.

`export_tflite` writes a KerasHub text task (`BertTextClassifier`, a BERT
text embedder, ...) as the graph of its token ids, with its tokenizer's class,
settings and vocabulary inside the file (`keras_hub_task.METADATA_NAME`).
`WordPieceTokenizer` turns strings into those ids the way the task's
preprocessor does, with the standard library alone, so the file runs on
strings where neither KerasHub nor TensorFlow is installed
(`keras_lowrank.export.TextRunner`):

1. pre-tokenization (KerasHub's `pretokenize`): accents stripped (NFD, marks
   removed), the text split on whitespace (ASCII blanks, control and format
   characters) and on punctuation (ASCII symbols and Unicode `P*`), each
   punctuation mark and CJK ideograph a word of its own, then every word
   case-folded (Unicode NFKC_Casefold, default-ignorable code points
   dropped), as `tf_text.case_fold_utf8` does;
2. WordPiece: greedy longest match first, pieces after the first prefixed
   with the suffix indicator (`##`); a word that cannot be covered, or of
   more than 100 UTF-8 bytes, is the unknown token;
3. packing (KerasHub's `MultiSegmentPacker` for one segment): the start
   token (`[CLS]`), the first `sequence_length - 2` pieces, the end token
   (`[SEP]`), then the pad id.

The parity tests compare it with the task's own preprocessor on texts with
accents, CJK, punctuation, unknown words, control characters and long texts.
"""

import unicodedata

import numpy as np

# `tf_text.FastWordpieceTokenizer` maps words longer than this many bytes to
# the unknown token, and KerasHub does.
MAX_BYTES_PER_WORD = 100

# Unicode default-ignorable code points `tf_text.case_fold_utf8` drops
# (NFKC_Casefold), as KerasHub's Python path lists them.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
# CJK ideographs, each a word of its own with `split_on_cjk`.
_CJK = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
# KerasHub's WordPiece tokenizers, for files whose settings predate their
# `"wordpiece"` entry (KerasHub's `WordPieceTokenizer` and subclasses).
WORDPIECE_TOKENIZERS = ("WordPieceTokenizer", "BertTokenizer", "DistilBertTokenizer", "ElectraTokenizer")


class WordPieceTokenizer:
    """Strings to the token ids a KerasHub WordPiece task's file takes.

    Args:
        vocabulary: the tokens, in id order.
        sequence_length: the length of the packed ids.
        start_id: the id packed before the pieces (`[CLS]`).
        end_id: the id packed after them (`[SEP]`).
        pad_id: the id filling the rest of the row (`[PAD]`).
        lowercase: whether words are case-folded (KerasHub's setting).
        strip_accents: whether accent marks are removed first.
        split: whether the text is split on whitespace and punctuation
            (else it is one word).
        split_on_cjk: whether each CJK ideograph is a word of its own.
        suffix_indicator: the prefix of pieces after a word's first.
        oov_token: the token of words the vocabulary cannot cover.

    Example:

    ```python
    tokenizer = WordPieceTokenizer.from_settings(read_task_settings("classifier.tflite"))
    ids = tokenizer.tokenize(["book a table for two"])   # (1, sequence_length) int32
    ```
    """

    def __init__(self, vocabulary, sequence_length, start_id, end_id, pad_id, *, lowercase=False,
                 strip_accents=False, split=True, split_on_cjk=True, suffix_indicator="##", oov_token="[UNK]"):
        if not isinstance(sequence_length, int) or sequence_length < 2:
            raise ValueError(
                f"Expected `sequence_length` to be an integer >= 2 (room for the start and end tokens), "
                f"received: sequence_length={sequence_length!r}"
            )
        self.vocabulary = list(vocabulary)
        self._ids = {token: index for index, token in enumerate(self.vocabulary)}
        if oov_token not in self._ids:
            raise ValueError(f"Expected `oov_token` in the vocabulary, received: oov_token={oov_token!r}")
        self.sequence_length = sequence_length
        self.start_id, self.end_id, self.pad_id = int(start_id), int(end_id), int(pad_id)
        self.lowercase, self.strip_accents, self.split = bool(lowercase), bool(strip_accents), bool(split)
        self.split_on_cjk = bool(split_on_cjk)
        self.suffix_indicator, self.oov_token = suffix_indicator, oov_token

    @classmethod
    def from_settings(cls, settings):
        """The tokenizer of a task file's settings (`read_task_settings`).

        Raises:
            ValueError: for a file of another tokenizer (a byte-pair or
                SentencePiece one), a preprocessor that packs no start and
                end tokens, or special tokens split out of strings.
        """
        name = settings.get("tokenizer")
        wordpiece = settings.get("wordpiece", name in WORDPIECE_TOKENIZERS)
        if not wordpiece or not settings.get("vocabulary"):
            raise ValueError(
                f"The file's tokenizer is {name!r}; the reference runner reads KerasHub WordPiece tokenizers "
                "(BERT's and its kin): tokenize with the task's own preprocessor and run the ids with "
                "keras_lowrank.export.run_tflite"
            )
        config, special = settings.get("config") or {}, settings.get("special_token_ids") or {}
        if config.get("special_tokens_in_strings"):
            raise ValueError("The file's tokenizer splits special tokens out of strings, which the reference "
                             "runner does not: tokenize with the task's own preprocessor")
        start = special.get("cls_token_id", special.get("start_token_id"))
        end = special.get("sep_token_id", special.get("end_token_id"))
        if start is None or end is None:
            raise ValueError("The file's tokenizer names no start and end tokens to pack the pieces with: "
                             "tokenize with the task's own preprocessor")
        return cls(
            settings["vocabulary"], settings["sequence_length"], start, end, settings.get("pad_id", 0),
            lowercase=config.get("lowercase", False), strip_accents=config.get("strip_accents", False),
            split=config.get("split", True), split_on_cjk=config.get("split_on_cjk", True),
            suffix_indicator=config.get("suffix_indicator", "##"), oov_token=config.get("oov_token", "[UNK]"),
        )

    def words(self, text):
        """The pre-tokenized words of one string."""
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        words = [text] if not self.split else _split(text, self.split_on_cjk)
        return [_casefold(word) for word in words] if self.lowercase else words

    def pieces(self, text):
        """The WordPiece tokens of one string (before packing)."""
        return [piece for word in self.words(text) for piece in self._word_pieces(word)]

    def tokenize(self, texts):
        """The packed int32 ids `(n, sequence_length)` of a sequence of strings."""
        from keras_lowrank.utils import texts as texts_lib

        rows = []
        for text in texts_lib.text_list(texts, "texts"):
            ids = [self._ids[piece] for piece in self.pieces(text)][: self.sequence_length - 2]
            row = [self.start_id, *ids, self.end_id]
            rows.append(row + [self.pad_id] * (self.sequence_length - len(row)))
        return np.asarray(rows, dtype="int32").reshape(-1, self.sequence_length)

    def _word_pieces(self, word):
        if not word:
            return []
        if len(word.encode("utf-8")) > MAX_BYTES_PER_WORD:
            return [self.oov_token]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else self.suffix_indicator + word[start:end]
                if piece in self._ids:
                    break
                end -= 1
            else:
                return [self.oov_token]
            pieces.append(piece)
            start = end
        return pieces


def _in(ranges, char):
    code = ord(char)
    return any(low <= code <= high for low, high in ranges)


def _is_whitespace(char):
    return char in " \t\n\r\f" or unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    code = ord(char)
    # ASCII symbols count as punctuation, as in BERT: `!-/`, `:-@`, `[-``, `{-~`.
    return (33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
            or unicodedata.category(char).startswith("P"))


def _split(text, split_on_cjk):
    words, current = [], []
    for char in text:
        whitespace = _is_whitespace(char)
        alone = _is_punctuation(char) or (split_on_cjk and _in(_CJK, char))
        if whitespace or alone:
            if current:
                words.append("".join(current))
                current = []
            if alone and not whitespace:
                words.append(char)
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def _casefold(text):
    # NFKC_Casefold: NFKC(casefold(NFKC(x))) without default ignorables.
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if not _in(_DEFAULT_IGNORABLE, c))
