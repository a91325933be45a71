"""The embedding objective of `compress()`: an encoder compressed without labels.

A sentence encoder has no labels to fine-tune on: what must survive is its
output vectors. With `objective="embedding"` (or data that hold inputs only)
`compress()` turns the inputs into `(x, vectors of the input model)` once,
fine-tunes every candidate to reproduce those vectors (a cosine distance),
and chooses on the mean cosine of the validation vectors; the report adds
`keras_lowrank.compression.fidelity` figures (NN@1, NN@10). The rest of the
search is the classification one.

Candidates are fine-tuned with dropout off (`without_dropout`): the
targets are the input model's deterministic vectors, which a student with
dropout on cannot reproduce while it trains (docs/transformers.md measures
the difference on all-MiniLM-L6-v2).

This module only prepares data, names the loss and metric and switches
dropout: it must not plan or train.
"""

import sys

import keras
import numpy as np

from keras_lowrank._keras_private import flatten_layers
from keras_lowrank.compression import data as data_lib
from keras_lowrank.utils import texts as texts_lib

OBJECTIVES = ("classification", "embedding")
# The validation metric compared: Keras' mean cosine of output and target.
MONITOR = "cosine"


def holds_inputs_only(data):
    """Whether `data` is model inputs without labels (an array, a dict of arrays,
    a list of texts, or a tf.data.Dataset whose elements are not tuples)."""
    if isinstance(data, (np.ndarray, dict)) or keras.ops.is_tensor(data) or texts_lib.is_text_batch(data):
        return True
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(data, tf.data.Dataset):
        return not isinstance(data.element_spec, tuple)
    return False


def inputs_of(data, name):
    """The inputs of unlabeled `data` as arrays (a dict of arrays, or an array).

    Accepts an array, a dict of arrays, a list of texts, a one-element
    tuple `(x,)`, or a finite tf.data.Dataset of input batches (read once,
    to its end).

    Raises:
        ValueError: for anything else, or no examples.
    """
    if isinstance(data, tuple) and len(data) == 1:
        data = data[0]
    if texts_lib.is_text_batch(data) and not isinstance(data, np.ndarray):
        # Raw texts, for a model with its own preprocessor (a KerasHub embedder).
        data = np.asarray(texts_lib.text_list(data, name))
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(data, tf.data.Dataset):
        if int(data.cardinality()) == tf.data.INFINITE_CARDINALITY:
            raise ValueError(f"Expected a finite `{name}`, received an infinite tf.data.Dataset: cut it with "
                             "`dataset.take(n)`")
        batches = list(data.as_numpy_iterator())
        if not batches:
            raise ValueError(f"`{name}` holds no examples")
        if any(isinstance(batch, tuple) for batch in batches[:1]):
            raise ValueError(f"Expected `{name}` to yield model inputs only (objective='embedding'), received "
                             "tuples: pass the inputs without labels")
        data = keras.tree.map_structure(lambda *parts: np.concatenate(parts), *batches)
    if not isinstance(data, (np.ndarray, dict)) and not keras.ops.is_tensor(data):
        raise ValueError(
            f"Expected `{name}` as model inputs without labels (an array, a dict of arrays or a tf.data.Dataset "
            f"of input batches) for objective='embedding', received: {type(data).__name__}"
        )
    data = keras.tree.map_structure(lambda a: np.asarray(keras.ops.convert_to_numpy(a)), data)
    if data_lib.num_examples(data) == 0:
        raise ValueError(f"`{name}` holds no examples")
    return data


def with_targets(model, inputs, batch_size):
    """`(inputs, vectors)`: the input model's output vectors as targets, float32."""
    vectors = model.predict(inputs, batch_size=max(batch_size, 256), verbose=0)
    if isinstance(vectors, (list, tuple, dict)):
        raise ValueError("Expected `model` to output one tensor of vectors for objective='embedding'")
    vectors = np.asarray(vectors, np.float32)
    if not np.all(np.isfinite(vectors)):
        raise ValueError("The input model outputs non-finite vectors on the data: nothing to distill")
    return inputs, vectors


def loss_and_metrics():
    """The fine-tune loss (cosine distance to the input model's vectors) and the compared metric."""
    return keras.losses.CosineSimilarity(axis=-1), [keras.metrics.CosineSimilarity(name=MONITOR, axis=-1)]


def without_dropout(model):
    """Sets the rate of every `keras.layers.Dropout` in `model` to 0 (nested
    ones included, e.g. a transformer's attention dropout).

    Returns:
        A function of no arguments that puts the rates back (the saved
        model keeps its dropout for later training).
    """
    rates = [(layer, layer.rate) for layer in flatten_layers(model) if isinstance(layer, keras.layers.Dropout)]
    for layer, _ in rates:
        layer.rate = 0.0

    def restore():
        for layer, rate in rates:
            layer.rate = rate

    return restore
