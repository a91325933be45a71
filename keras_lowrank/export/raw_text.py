"""A raw-text model split into its tokenizer and the model of its token ids.

A Keras text classifier often takes strings: `Input(dtype="string")`, then
a `TextVectorization` layer, then the embedding and the rest. The string
ops are not builtin TFLite ops, so the export follows the field's
convention (TFLite Task Library's NLClassifier): the integer part becomes
the `.tflite` graph, and the vocabulary and tokenization settings travel
with it (`TextTokenizer`), for the application, or `TextRunner`, to turn a
string into ids exactly as the layer did.

This module only finds and splits; it must not convert or write.
"""

import dataclasses

from keras_lowrank import _keras_private
from keras_lowrank.export.text_tokenizer import TextTokenizer

# The name of the file's input: ids, where the Keras model took text.
IDS_INPUT_NAME = "token_ids"


@dataclasses.dataclass
class RawTextModel:
    """A string-input model as its tokenizer and its id-input part.

    Attributes:
        tokenizer: The `TextTokenizer` of its `TextVectorization` layer.
        ids_model: A `keras.Model` sharing the layers after the
            vectorization, taking its ids `(batch, sequence_length)`.
        layer: The `TextVectorization` layer.
    """

    tokenizer: TextTokenizer
    ids_model: object
    layer: object


def takes_text(model):
    """Whether `model`'s (first) input is a string tensor."""
    inputs = getattr(model, "inputs", None) or []
    return bool(inputs) and str(getattr(inputs[0], "dtype", "")) == "string"


def split_raw_text(model):
    """The tokenizer and id-input part of a raw-text model; `None` for a model of ids.

    Args:
        model: A built `keras.Model`.

    Returns:
        A `RawTextModel`, or `None` when the model does not take strings.

    Raises:
        ValueError: In one line, saying what to do, when the model takes
            strings but not through one `TextVectorization` layer applied
            to its string input (a `StringLookup` of pre-split tokens, a
            vectorization inside a nested model, the text used by another
            layer too), or when the layer's settings cannot be written
            (see `TextTokenizer.from_layer`).
    """
    import keras

    if not takes_text(model):
        return None
    text = model.inputs[0]
    vectorizers = [
        layer for layer in model.layers if isinstance(layer, keras.layers.TextVectorization)
    ]
    fed = [layer for layer in vectorizers if _keras_private.output_on(layer, text) is not None]
    if len(fed) != 1:
        found = ", ".join(layer.name for layer in vectorizers) or "none at the top level"
        raise ValueError(
            "A raw-text model exports when one TextVectorization layer takes its string input directly "
            f"(found: {found}); otherwise export the model of its token ids "
            "(keras.Model(ids_input, ...)) and tokenize in the application"
        )
    layer = fed[0]
    tokenizer = TextTokenizer.from_layer(layer)
    try:
        ids_model = keras.Model(_keras_private.output_on(layer, text), model.outputs, name=model.name)
    except ValueError as error:
        raise ValueError(
            f"The model's string input is used by layers other than its TextVectorization {layer.name!r}, "
            f"so the layers after it cannot run on token ids alone ({str(error).splitlines()[0]})"
        ) from None
    return RawTextModel(tokenizer=tokenizer, ids_model=ids_model, layer=layer)

