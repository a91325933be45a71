"""What a Keras `TextVectorization` layer does to a string, in plain Python.

A raw-text model exported to LiteRT keeps its integer part in the `.tflite`
file; the string part (standardize, split, n-grams, vocabulary lookup,
padding) is not made of builtin TFLite ops, so it travels with the file as
settings (`TextTokenizer.to_json`) and is run by the application. This
module is the reference implementation of those settings: past
`from_layer` it uses neither Keras nor TensorFlow, so it is also what a port
to Kotlin or Swift reads.

Keras' semantics, reproduced exactly (and checked against the layer on every
export):

- `"lower"` lowercases ASCII letters only (`tf.strings.lower` without an
  encoding); `É` stays `É`.
- `"strip_punctuation"` deletes the ASCII characters
  ``!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'``.
- `"whitespace"` splits on runs of ASCII whitespace (space, `\\t`, `\\n`,
  `\\v`, `\\f`, `\\r`), as `tf.strings.split` does: a no-break space is part
  of a token. `"character"` splits into Unicode code points.
- n-grams of each width in order, joined by a space (`tf.strings.ngrams`):
  for widths (1, 2), `a b c` gives `a, b, c, a b, b c`.
- A token in the vocabulary gets its index, any other the OOV index 1; the
  mask token `""` gets 0.
- Sequences are cut to `sequence_length` and padded with 0; without a
  fixed length a batch is padded to its longest sequence.
"""

import dataclasses
import json
import re

import numpy as np

from keras_lowrank.utils import texts as texts_lib

FORMAT = "keras_lowrank.text_vectorization"
VERSION = 1
# The name of the `.tflite` metadata entry holding `to_json()`.
METADATA_NAME = FORMAT

STANDARDIZE_MODES = (None, "lower", "strip_punctuation", "lower_and_strip_punctuation")
SPLIT_MODES = (None, "whitespace", "character")

# `TextVectorization`'s punctuation class, as one translation table.
_PUNCTUATION = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'"
_DELETE_PUNCTUATION = str.maketrans("", "", _PUNCTUATION)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_WHITESPACE = re.compile("[ \t\n\v\f\r]+")


@dataclasses.dataclass(frozen=True)
class TextTokenizer:
    """The string-to-ids half of a `TextVectorization` layer, without TensorFlow.

    Built from a layer with `from_layer`, written with `to_json` and read back
    with `from_json`; `tokenize` turns strings into the ids the layer would
    give the rest of the model.

    Args:
        vocabulary: The layer's vocabulary, index order, special tokens
            included (`layer.get_vocabulary()`: `""` then `"[UNK]"` first).
        standardize: One of `None`, `"lower"`, `"strip_punctuation"`,
            `"lower_and_strip_punctuation"`.
        split: One of `None`, `"whitespace"`, `"character"`.
        ngrams: `None` or a tuple of n-gram widths, in order.
        sequence_length: Output length, or `None` to pad a batch to its
            longest sequence.
        oov_id: The index of tokens outside the vocabulary.
        mask_token: The token that maps to 0 (`""` in Keras), or `None`.

    Example:

    ```python
    tokenizer = TextTokenizer.from_layer(model.get_layer("text_vectorization"))
    ids = tokenizer.tokenize(["Book a table for two"])  # int32, (1, length)
    ```
    """

    # Tens of thousands of tokens: left out of the repr.
    vocabulary: tuple = dataclasses.field(repr=False)
    standardize: str | None = "lower_and_strip_punctuation"
    split: str | None = "whitespace"
    ngrams: tuple | None = None
    sequence_length: int | None = None
    oov_id: int = 1
    mask_token: str | None = ""

    def __post_init__(self):
        if self.standardize not in STANDARDIZE_MODES:
            raise ValueError(
                f"Expected `standardize` to be one of {STANDARDIZE_MODES}, "
                f"received: standardize={self.standardize!r}"
            )
        if self.split not in SPLIT_MODES:
            raise ValueError(f"Expected `split` to be one of {SPLIT_MODES}, received: split={self.split!r}")
        if self.ngrams is not None and (
            not self.ngrams or not all(isinstance(n, int) and n > 0 for n in self.ngrams)
        ):
            raise ValueError(
                f"Expected `ngrams` to be None or a tuple of positive integers, received: ngrams={self.ngrams!r}"
            )
        if self.sequence_length is not None and (
            not isinstance(self.sequence_length, int) or self.sequence_length <= 0
        ):
            raise ValueError(
                "Expected `sequence_length` to be None or a positive integer, "
                f"received: sequence_length={self.sequence_length!r}"
            )
        if not self.vocabulary:
            raise ValueError("Expected a non-empty `vocabulary`, received: vocabulary=()")
        object.__setattr__(self, "vocabulary", tuple(self.vocabulary))
        if self.ngrams is not None:
            object.__setattr__(self, "ngrams", tuple(self.ngrams))
        index = {}
        for i, token in enumerate(self.vocabulary):
            index.setdefault(token, i)
        if self.mask_token is not None:
            index[self.mask_token] = 0
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_layer(cls, layer):
        """The tokenizer of a Keras `TextVectorization` layer.

        Raises:
            ValueError: In one line, naming the layer, where its settings have
                no plain-Python equivalent here: a callable `standardize` or
                `split`, an `output_mode` other than `"int"`, ragged output,
                or more than one OOV index (hashed buckets).
        """
        config = layer.get_config()
        name = getattr(layer, "name", "text_vectorization")
        for option in ("standardize", "split"):
            if config.get(option) is not None and not isinstance(config[option], str):
                raise ValueError(
                    f"TextVectorization {name!r} uses a custom `{option}` callable, which cannot be written "
                    f"with the file: use one of the built-in modes {STANDARDIZE_MODES if option == 'standardize' else SPLIT_MODES}, "
                    "or export the model from its integer ids"
                )
        if config.get("output_mode", "int") != "int":
            raise ValueError(
                f"TextVectorization {name!r} has output_mode={config['output_mode']!r}; only 'int' (token ids "
                "for an embedding) exports with its vocabulary"
            )
        if config.get("ragged"):
            raise ValueError(f"TextVectorization {name!r} returns ragged ids; set ragged=False to export it")
        from keras_lowrank._keras_private import inner_lookup

        inner = inner_lookup(layer)
        oov = int(getattr(inner, "num_oov_indices", 1))
        if oov != 1:
            raise ValueError(
                f"TextVectorization {name!r} hashes unknown tokens into {oov} OOV buckets; export supports one "
                "OOV index (num_oov_indices=1)"
            )
        mask_token = getattr(inner, "mask_token", "")
        ngrams = config.get("ngrams")
        if isinstance(ngrams, int):
            ngrams = tuple(range(1, ngrams + 1))
        return cls(
            vocabulary=tuple(layer.get_vocabulary()),
            standardize=config.get("standardize"),
            split=config.get("split"),
            ngrams=tuple(ngrams) if ngrams is not None else None,
            sequence_length=config.get("output_sequence_length"),
            # The OOV index follows the mask's: 1 after it, 0 without one.
            oov_id=1 if mask_token is not None else 0,
            mask_token=mask_token,
        )

    def to_json(self):
        """The settings as a JSON string (what the `.tflite` file carries)."""
        return json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "standardize": self.standardize,
                "split": self.split,
                "ngrams": list(self.ngrams) if self.ngrams is not None else None,
                "sequence_length": self.sequence_length,
                "oov_id": self.oov_id,
                "mask_token": self.mask_token,
                "vocabulary": list(self.vocabulary),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text):
        """Reads `to_json`'s output; a `ValueError` if it is not that."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Expected the JSON of a TextTokenizer, could not parse it: {error}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"Expected the JSON of a TextTokenizer (format {FORMAT!r}), received another document")
        if data.get("version") != VERSION:
            raise ValueError(
                f"Expected TextTokenizer settings version {VERSION}, received version {data.get('version')!r}: "
                "upgrade keras_lowrank to read this file"
            )
        return cls(
            vocabulary=tuple(data["vocabulary"]),
            standardize=data["standardize"],
            split=data["split"],
            ngrams=tuple(data["ngrams"]) if data["ngrams"] is not None else None,
            sequence_length=data["sequence_length"],
            oov_id=data["oov_id"],
            mask_token=data["mask_token"],
        )

    def summary(self):
        """The settings without the vocabulary, for reports."""
        return {
            "vocabulary_size": len(self.vocabulary),
            "standardize": self.standardize,
            "split": self.split,
            "ngrams": list(self.ngrams) if self.ngrams is not None else None,
            "sequence_length": self.sequence_length,
        }

    def tokens(self, text):
        """The tokens of one string, before the vocabulary lookup."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise ValueError(f"Expected a string, received: {text!r}")
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            text = text.translate(_ASCII_LOWER)
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = text.translate(_DELETE_PUNCTUATION)
        if self.split == "whitespace":
            tokens = [token for token in _ASCII_WHITESPACE.split(text) if token]
        elif self.split == "character":
            tokens = list(text)
        else:
            tokens = [text]
        if self.ngrams is None:
            return tokens
        return [
            " ".join(tokens[i : i + width])
            for width in self.ngrams
            for i in range(len(tokens) - width + 1)
        ]

    def tokenize(self, texts):
        """Token ids of a batch of strings: an int32 array `(len(texts), length)`.

        Args:
            texts: A sequence of `str` (or UTF-8 `bytes`); a numpy array of
                strings of shape `(n,)` or `(n, 1)` is read the same way.

        Returns:
            The ids the `TextVectorization` layer gives for the same batch
            of shape `(n, 1)`: `length` is `sequence_length`, or the longest
            sequence of the batch when it is `None` (0 for a batch of empty
            texts, as in Keras).
        """
        texts = texts_lib.text_list(texts, "texts", allow_empty=True)
        rows = [[self._index.get(token, self.oov_id) for token in self.tokens(text)] for text in texts]
        length = self.sequence_length or max([len(row) for row in rows] + [0])
        ids = np.zeros((len(rows), length), dtype="int32")
        for i, row in enumerate(rows):
            row = row[:length]
            ids[i, : len(row)] = row
        return ids
