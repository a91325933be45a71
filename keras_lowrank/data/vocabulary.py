"""Tokenization and the word vocabulary: text -> integer ids.

`tokenize` splits text into lower-cased word and punctuation tokens;
`build_vocabulary` counts tokens of the training split and assigns ids by
descending frequency; `Vocabulary.encode` maps texts to padded int32 id
arrays. Id 0 is padding (masked by the models' `mask_zero=True` embeddings)
and id 1 is the out-of-vocabulary (OOV) id, shared by every word not in the
vocabulary; both rows exist in every embedding table built from a vocabulary.
This module must not know about datasets, word vectors or Keras.
"""

import collections
import re

import numpy as np

from keras_lowrank.utils.atomic_write import atomic_open

PADDING_TOKEN = "[PAD]"
OOV_TOKEN = "[UNK]"
PADDING_ID = 0
OOV_ID = 1
_RESERVED = 2

# Order matters: clitics first so "don't" -> "do", "n't" and "it's" -> "it",
# "'s" (the Penn Treebank split, which GloVe's vocabulary follows); then
# numbers with inner "." / ","; words with inner hyphens; any other single
# non-space character (punctuation) on its own.
_TOKEN_PATTERN = re.compile(
    r"\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|\d+(?:[.,]\d+)+|\w+(?:-\w+)*|[^\w\s]"
)


def tokenize(text):
    """Splits a text into lower-cased word and punctuation tokens.

    Rules, applied left to right: the text is lower-cased; English clitics are
    split off Penn-Treebank style (`"don't"` -> `["do", "n't"]`,
    `"it's"` -> `["it", "'s"]`); numbers keep inner `.`/`,`
    (`"3.5"`); words keep inner hyphens (`"well-made"`); every other
    non-space, non-word character is a token of its own. Any Unicode
    whitespace (including U+0085) separates tokens. Already tokenized text
    (SST, MR, TREC) therefore round-trips unchanged.

    Example:

    >>> tokenize("Don't panic: it's 3.5 well-made points!")
    ['do', "n't", 'panic', ':', 'it', "'s", '3.5', 'well-made', 'points', '!']

    Args:
        text: a `str`.

    Returns:
        A list of `str` tokens.
    """
    return _TOKEN_PATTERN.findall(text.lower())


class Vocabulary:
    """Maps tokens to integer ids: 0 = padding, 1 = OOV, then by frequency.

    Build one with `build_vocabulary` from the training texts only. `counts`
    holds the training count of every id (0 for padding; for OOV, the number
    of training tokens that map to it), which frequency-aware factorization
    (row weights) and vocabulary pruning use.

    Example:

    ```python
    vocabulary = build_vocabulary(train_texts, max_tokens=20000)
    ids = vocabulary.encode(["a fine film"], sequence_length=8)  # int32 [1, 8]
    vocabulary.save("vocab.txt")
    ```

    Args:
        tokens: the word tokens for ids 2, 3, ... (without the reserved ones).
        counts: their training counts (same length), or `None` for zeros.
        oov_count: training tokens mapped to the OOV id.
    """

    def __init__(self, tokens, counts=None, *, oov_count=0):
        tokens = [str(t) for t in tokens]
        if counts is None:
            counts = np.zeros(len(tokens), dtype=np.int64)
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        if len(counts) != len(tokens):
            raise ValueError(
                f"Expected one count per token, received {len(tokens)} tokens "
                f"and {len(counts)} counts."
            )
        self.tokens = [PADDING_TOKEN, OOV_TOKEN] + tokens
        self._index = {}
        for i, token in enumerate(self.tokens):
            if not token or any(c.isspace() for c in token):
                raise ValueError(f"Expected tokens without whitespace, received: {token!r}")
            if token in self._index:
                raise ValueError(f"Duplicate token in vocabulary: {token!r}")
            self._index[token] = i
        self.counts = np.concatenate([[0, int(oov_count)], counts]).astype(np.int64)

    def __len__(self):
        return len(self.tokens)

    def __contains__(self, token):
        return token in self._index

    def __repr__(self):
        return f"Vocabulary(size={len(self)}, training_tokens={int(self.counts.sum())})"

    @property
    def size(self):
        """Number of ids, padding and OOV included (the embedding `input_dim`)."""
        return len(self.tokens)

    def token_to_id(self, token):
        """Returns the id of `token`, or `OOV_ID` when it is unknown."""
        return self._index.get(token, OOV_ID)

    def id_to_token(self, index):
        """Returns the token of an id."""
        return self.tokens[index]

    def encode(self, texts, sequence_length=None):
        """Tokenizes and maps texts to a padded int32 array.

        Each text becomes its token ids (unknown words -> `OOV_ID`), truncated
        to its first `sequence_length` tokens, then padded at the end with
        `PADDING_ID`.

        Args:
            texts: a `str` or a sequence of `str`.
            sequence_length: number of columns; `None` uses the longest text
                (at least 1).

        Returns:
            int32 numpy array of shape `[len(texts), sequence_length]`.
        """
        if isinstance(texts, str):
            texts = [texts]
        if sequence_length is not None and (
            not isinstance(sequence_length, (int, np.integer)) or sequence_length < 1
        ):
            raise ValueError(
                "Expected `sequence_length` to be a positive integer or None, "
                f"received: sequence_length={sequence_length!r}"
            )
        rows = [[self._index.get(t, OOV_ID) for t in tokenize(text)] for text in texts]
        if sequence_length is None:
            sequence_length = max([len(r) for r in rows] + [1])
        out = np.zeros((len(rows), sequence_length), dtype=np.int32)
        for i, row in enumerate(rows):
            row = row[:sequence_length]
            out[i, : len(row)] = row
        return out

    def decode(self, ids):
        """Maps a 1-D id sequence back to tokens, dropping padding."""
        return [self.tokens[i] for i in np.asarray(ids).reshape(-1) if i != PADDING_ID]

    def prune(self, max_tokens):
        """Keeps the `max_tokens` most frequent ids; the rest map to OOV.

        Because ids are in frequency order, pruning keeps ids
        `0 .. max_tokens - 1`. The dropped words' counts are added to the OOV
        count. This is the "keep the most frequent words" baseline.

        Args:
            max_tokens: size of the new vocabulary, padding and OOV included
                (at least 2).

        Returns:
            `(vocabulary, id_map)`: the pruned `Vocabulary` and an int32 array
            of length `len(self)` mapping each old id to its new id (kept ids
            are unchanged, the others map to `OOV_ID`). The pruned table is
            `old_table[:max_tokens]`; re-encode old ids with `id_map[old_ids]`.
        """
        if not isinstance(max_tokens, (int, np.integer)) or max_tokens < _RESERVED:
            raise ValueError(
                "Expected `max_tokens` to be an integer >= 2 (padding and OOV "
                f"included), received: max_tokens={max_tokens!r}"
            )
        keep = min(int(max_tokens), len(self))
        dropped = int(self.counts[keep:].sum())
        pruned = Vocabulary(
            self.tokens[_RESERVED:keep],
            self.counts[_RESERVED:keep],
            oov_count=int(self.counts[OOV_ID]) + dropped,
        )
        id_map = np.full(len(self), OOV_ID, dtype=np.int32)
        id_map[:keep] = np.arange(keep, dtype=np.int32)
        return pruned, id_map

    def save(self, path):
        """Writes the vocabulary as UTF-8 text: one `token<TAB>count` per id."""
        with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
            for token, count in zip(self.tokens, self.counts):
                f.write(f"{token}\t{int(count)}\n")

    @classmethod
    def load(cls, path):
        """Reads a file written by `save`."""
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        entries = []
        for number, line in enumerate(lines, start=1):
            token, sep, count = line.partition("\t")
            if not sep or not count.strip().lstrip("-").isdigit():
                raise ValueError(f"{path}, line {number}: expected `token<TAB>count`, found {line!r}")
            entries.append((token, int(count)))
        if len(entries) < _RESERVED or [e[0] for e in entries[:_RESERVED]] != [PADDING_TOKEN, OOV_TOKEN]:
            raise ValueError(
                f"{path}: expected the first two lines to be {PADDING_TOKEN!r} and "
                f"{OOV_TOKEN!r}; not a keras_lowrank vocabulary file."
            )
        rest = entries[_RESERVED:]
        return cls([t for t, _ in rest], [c for _, c in rest], oov_count=entries[OOV_ID][1])


def build_vocabulary(texts, *, max_tokens=None, min_count=1):
    """Builds a `Vocabulary` from training texts.

    Tokens (see `tokenize`) with at least `min_count` occurrences get ids
    2, 3, ... in descending count order, ties broken by the token string
    (Unicode code-point order), so the result does not depend on text order.
    With `max_tokens`, only the most frequent `max_tokens - 2` words are kept.
    Every training token not kept is counted on the OOV id.

    Example:

    >>> v = build_vocabulary(["a b b", "c b a"])
    >>> v.tokens, v.counts.tolist()
    (['[PAD]', '[UNK]', 'b', 'a', 'c'], [0, 0, 3, 2, 1])

    Args:
        texts: iterable of training texts (`str`).
        max_tokens: maximum vocabulary size, padding and OOV included
            (`None`: no limit).
        min_count: minimum training count of a kept word.

    Returns:
        A `Vocabulary`.
    """
    if max_tokens is not None and (
        not isinstance(max_tokens, (int, np.integer)) or max_tokens < _RESERVED
    ):
        raise ValueError(
            "Expected `max_tokens` to be None or an integer >= 2 (padding and OOV "
            f"included), received: max_tokens={max_tokens!r}"
        )
    if not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(
            f"Expected `min_count` to be a positive integer, received: min_count={min_count!r}"
        )
    if isinstance(texts, str):
        raise ValueError("Expected `texts` to be a sequence of strings, received a single str.")
    counter = collections.Counter()
    for text in texts:
        counter.update(tokenize(text))
    reserved = {PADDING_TOKEN, OOV_TOKEN}
    ranked = sorted(
        ((t, c) for t, c in counter.items() if t not in reserved),
        key=lambda item: (-item[1], item[0]),
    )
    kept = [(t, c) for t, c in ranked if c >= min_count]
    if max_tokens is not None:
        kept = kept[: max_tokens - _RESERVED]
    total = sum(counter.values())
    oov = total - sum(c for _, c in kept)
    return Vocabulary([t for t, _ in kept], [c for _, c in kept], oov_count=oov)
