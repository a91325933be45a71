"""Runs an exported raw-text `.tflite` file on strings: the reference runner.

`export_tflite` writes a raw-text model (one holding its
`TextVectorization`) as the graph of its token ids plus the tokenizer's
settings inside the file. `TextRunner` reads both and does what an
application on a phone does: tokenize each string in plain Python
(`TextTokenizer`), then run the LiteRT interpreter on the ids. Its outputs
are what the export checks against Keras, and what a port of the tokenizer
to another language should reproduce.
"""

import os

import numpy as np

from keras_lowrank.export import metadata
from keras_lowrank.export.text_tokenizer import METADATA_NAME
from keras_lowrank.export.text_tokenizer import TextTokenizer


def read_tokenizer(model_content):
    """The `TextTokenizer` carried by a `.tflite` file (bytes or path), or `None`."""
    data = metadata.read_metadata(model_content, METADATA_NAME)
    return None if data is None else TextTokenizer.from_json(data.decode("utf-8"))


class TextRunner:
    """A raw-text `.tflite` file, called on strings.

    Args:
        model: Path to a `.tflite` file written by `export_tflite` from a
            model that takes raw text, or its bytes.
        num_threads: Interpreter threads (`None`: LiteRT's default).

    Call arguments:
        texts: A sequence of strings (or a numpy array of shape `(n,)` or
            `(n, 1)`).

    Returns:
        The model's output for each text, a numpy array `(n, ...)`.

    Raises:
        ValueError: If the file carries no tokenizer settings (it was
            exported from a model of token ids).

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
