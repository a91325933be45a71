"""Runs an exported `.tflite` file on strings: the reference runner.

`export_tflite` writes a raw-text model (one holding its
`TextVectorization`) or a KerasHub text task as the graph of its token ids
plus the tokenizer's settings inside the file. `TextRunner` reads both and
does what an application on a phone does: tokenize each string in plain
Python (`TextTokenizer` for a `TextVectorization`, `WordPieceTokenizer` for
a KerasHub WordPiece task), then run the LiteRT interpreter on the ids. Its
outputs are what the export checks against Keras, and what a port of the
tokenizer to another language should reproduce.
"""

import os

import numpy as np

from keras_lowrank.export import keras_hub_task
from keras_lowrank.export import metadata
from keras_lowrank.export.text_tokenizer import METADATA_NAME
from keras_lowrank.export.text_tokenizer import TextTokenizer
from keras_lowrank.export.wordpiece import WordPieceTokenizer


def read_tokenizer(model_content):
    """The tokenizer carried by a `.tflite` file (bytes or path), or `None`.

    A `TextTokenizer` for a raw-text model's file, a `WordPieceTokenizer`
    for a KerasHub WordPiece task's.

    Raises:
        ValueError: for a task file whose tokenizer the runner cannot
            reproduce (see `WordPieceTokenizer.from_settings`).
    """
    data = metadata.read_metadata(model_content, METADATA_NAME)
    if data is not None:
        return TextTokenizer.from_json(data.decode("utf-8"))
    settings = keras_hub_task.read_task_settings(model_content)
    if settings is None or settings.get("tokenizer") is None:
        return None  # a task exported without its preprocessor: ids only
    return WordPieceTokenizer.from_settings(settings)


class TextRunner:
    """A `.tflite` file that carries its tokenizer, called on strings.

    Args:
        model: Path to a `.tflite` file written by `export_tflite` from a
            model that takes raw text (`TextVectorization`) or from a
            KerasHub WordPiece task with its preprocessor (`BertTextClassifier`,
            a BERT text embedder, ...), or its bytes.
        num_threads: Interpreter threads (`None`: LiteRT's default).

    Call arguments:
        texts: A sequence of strings (or a numpy array of shape `(n,)` or
            `(n, 1)`).

    Returns:
        The model's output for each text, a numpy array `(n, ...)`.

    Raises:
        ValueError: If the file carries no tokenizer settings (it was
            exported from a model of token ids, or a task without its
            preprocessor), or a tokenizer the runner cannot reproduce.

    Example:

    ```python
    keras_lowrank.export_tflite(raw_text_model, "intent.tflite")
    runner = keras_lowrank.export.TextRunner("intent.tflite")
    logits = runner(["book a table for two", "play some jazz"])
    ids = runner.tokenize(["play some jazz"])  # what the file's input gets
    ```
    """

    def __init__(self, model, num_threads=None):
        from keras_lowrank.export.tflite import make_interpreter

        if not isinstance(model, (bytes, bytearray)):
            with open(os.fspath(model), "rb") as f:
                model = f.read()
        self.tokenizer = read_tokenizer(model)
        if self.tokenizer is None:
            raise ValueError(
                "The file carries no tokenizer settings: it was exported from a model of token ids; "
                "run it on ids with keras_lowrank.export.run_tflite"
            )
        self._interpreter = make_interpreter(bytes(model), num_threads=num_threads)

    def tokenize(self, texts):
        """The int32 ids `(n, sequence_length)` the file's input gets for `texts`."""
        return self.tokenizer.tokenize(texts)

    def __call__(self, texts):
        from keras_lowrank.export.tflite import run_interpreter

        ids = self.tokenize(texts)
        if ids.shape[1] == 0:
            # A batch of empty texts: one padding id each, which every
            # masked model reads as the same empty sequence.
            ids = np.zeros((len(ids), 1), dtype="int32")
        return run_interpreter(self._interpreter, ids)
