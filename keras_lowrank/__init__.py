"""keras_lowrank: online low-rank compression of Keras embedding tables.

Train a text classifier, replace its embedding table by the two factors of the
table's truncated SVD, fine-tune end to end (optionally with the cyclically
annealed learning rate and distillation from the uncompressed model), and
export to TFLite.

This file is the table of contents of the public API: one import per public
name. Subpackages hold the rest: `keras_lowrank.data` (bundled datasets,
vocabularies, word vectors), `keras_lowrank.models` (the paper's classifiers),
`keras_lowrank.decomposition` (SVD and rank choice), `keras_lowrank.export`.

Importing it never imports TensorFlow: the core runs on every Keras 3
backend (TensorFlow, JAX, PyTorch). The TensorFlow-only features (dataset
builders in `keras_lowrank.data`, TFLite export from the TensorFlow backend)
import it when used and name the extra to install when it is missing; see
`docs/backends.md`.

Run as the `keras-lowrank` command, the package imports none of this up front
(`--help` and argument errors then answer without importing Keras or its
backend); the command line loads it with `load_public_api()` once the
arguments are parsed, and any attribute access loads it too.
"""

import importlib as _importlib
import os as _os
import sys as _sys

__version__ = "0.1.0"

# The table of contents: module -> the public names it gives this package.
_PUBLIC_API = {
    # Layers.
    "keras_lowrank.layers": (
        "CodebookEmbedding", "LowRankEmbedding", "LowRankReversibleEmbedding", "PrunedEmbedding",
    ),
    # The main call: compress a model's embedding tables to a byte budget.
    "keras_lowrank.compression": (
        "CompressionReport", "TableLayout", "compress", "prune_vocabulary", "table_bytes",
    ),
    # Rank choice and the decomposition behind it.
    "keras_lowrank.decomposition": (
        "energy_kept", "factorize_table", "max_useful_rank", "rank_for_compression",
        "rank_for_energy", "truncated_svd",
    ),
    # Model surgery.
    "keras_lowrank.surgery": ("ConversionReport", "factorize_embeddings"),
    # Learning-rate schedules.
    "keras_lowrank.schedules": (
        "CyclicalLearningRate", "CyclicallyAnnealedLearningRate", "plot_schedules",
    ),
    # Deployment.
    "keras_lowrank.export": (
        "ExportReport", "FoldReport", "TextRunner", "export_tflite", "fold_projections",
    ),
    # Fine-tuning.
    "keras_lowrank.training": ("Distiller", "LazyAdam", "distillation_loss"),
}
# Subpackages with their own tables of contents.
_SUBPACKAGES = ("data", "models")

__all__ = sorted(
    [name for names in _PUBLIC_API.values() for name in names] + list(_SUBPACKAGES)
)


def load_public_api():
    """Imports every public name (and so registers every serializable class).

    Runs at `import keras_lowrank`, except inside the `keras-lowrank` command
    before it has parsed its arguments. Idempotent.
    """
    namespace = globals()
    for module_name, names in _PUBLIC_API.items():
        module = _importlib.import_module(module_name)
        for name in names:
            namespace[name] = getattr(module, name)
    for name in _SUBPACKAGES:
        namespace[name] = _importlib.import_module(f"{__name__}.{name}")


def __getattr__(name):
    if name in __all__:
        load_public_api()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _started_as_command_line():
    # The `keras-lowrank` console script is the only process whose argv[0]
    # is the command itself; there the CLI calls `load_public_api()` after
    # parsing, so that `--help` never imports Keras and its backend.
    # `python -m keras_lowrank` imports this package while argv[0] is still
    # "-m" (Python sets it to __main__.py's path only afterwards): the same
    # command line, started the other way.
    argv = getattr(_sys, "argv", None) or [""]
    return _os.path.basename(argv[0]).split(".")[0] == "keras-lowrank" or argv[0] == "-m"


if not _started_as_command_line():
    load_public_api()
