"""Data for text classifiers: bundled datasets, user CSV/TSV folders,
tokenization and vocabularies, and pretrained word vectors.

Vocabularies, tokenization, splits and word vectors are numpy only and import
eagerly. The dataset loaders return `tf.data.Dataset`s and build with
tensorflow-datasets, so they import on first use (`keras_lowrank.data.X`
attribute access): `import keras_lowrank` never imports TensorFlow, and
using a loader without TensorFlow raises one `ImportError` naming the extra.
"""

import importlib

from keras_lowrank.data.splits import stratified_split
from keras_lowrank.data.text_files import load_text_folder
from keras_lowrank.data.vectors import VectorCoverage
from keras_lowrank.data.vectors import WordVectors
from keras_lowrank.data.vectors import embedding_matrix
from keras_lowrank.data.vectors import load_glove_6b_50d
from keras_lowrank.data.vectors import load_word_vectors
from keras_lowrank.data.vocabulary import OOV_ID
from keras_lowrank.data.vocabulary import PADDING_ID
from keras_lowrank.data.vocabulary import Vocabulary
from keras_lowrank.data.vocabulary import build_vocabulary
from keras_lowrank.data.vocabulary import tokenize

# TensorFlow-only names: public name -> module that defines it.
_LAZY = {
    "SPLIT_SEED": "keras_lowrank.data.datasets",
    "bundled_builder": "keras_lowrank.data.datasets",
    "default_data_dir": "keras_lowrank.data.datasets",
    "list_datasets": "keras_lowrank.data.datasets",
    "load_dataset": "keras_lowrank.data.datasets",
    "TextClassificationData": "keras_lowrank.data.text_classification_data",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
