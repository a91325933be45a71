"""all-MiniLM-L6-v2 for the benchmark: the public loader's folder, the parts' shapes.

The model is found and unpacked by `keras_lowrank.models.minilm` (the
public loader); this module adds what the benchmark's parts share: the
backbone with a classifier-style preprocessor at the parts' sequence length,
tokenizing whole splits to arrays, and where fine-tuned weights wait
between parts.
"""

import os

from keras_lowrank.models.minilm import HUB_HINT
from keras_lowrank.models.minilm import INSTALL_HINT  # noqa: F401 (named in messages and tests)
from keras_lowrank.models.minilm import PACKAGE  # noqa: F401
from keras_lowrank.models.minilm import default_cache_dir
from keras_lowrank.models.minilm import minilm_folder as model_folder  # noqa: F401
from keras_lowrank.models.minilm import minilm_tokenizer
from keras_lowrank.models.minilm import vocabulary  # noqa: F401


def default_runs_dir():
    """Where the benchmark keeps fine-tuned weights between parts (not results)."""
    return os.path.join(os.path.dirname(default_cache_dir()), "minilm_runs")


def load(folder, *, sequence_length=32):
    """Loads the backbone and a matching preprocessor.

    Args:
        folder: from `model_folder`.
        sequence_length: tokens per text ([CLS] and [SEP] included).

    Returns:
        `(backbone, preprocessor)`: a `keras_hub.models.BertBackbone` with the
        pretrained weights and a `keras_hub.models.BertTextClassifierPreprocessor`
        whose output is the backbone's input dict.
    """
    try:
        import keras_hub
    except ImportError:
        raise ImportError(f"all-MiniLM-L6-v2 is loaded with KerasHub: {HUB_HINT}") from None
    backbone = keras_hub.models.BertBackbone.from_preset(folder)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        minilm_tokenizer(folder), sequence_length=sequence_length
    )
    return backbone, preprocessor


def tokenize(preprocessor, texts, batch_size=1024):
    """The backbone's inputs for `texts` as a dict of numpy arrays."""
    import numpy as np

    parts = [preprocessor(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
    return {key: np.concatenate([np.asarray(p[key]) for p in parts]) for key in parts[0]}
