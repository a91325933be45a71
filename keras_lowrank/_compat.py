"""The boundary between the backend-agnostic core and TensorFlow-only features.

The core of keras_lowrank (layers, schedules, decomposition, surgery,
compression, distillation, folding, quantization) runs on every Keras 3
backend, so `import keras_lowrank` must never import TensorFlow or
tensorflow-datasets. A few features need them: the dataset builders
(`keras_lowrank.data.load_dataset` and friends, `tf.data` splits) and the
TFLite export from the TensorFlow backend. Those import TensorFlow through
`import_tensorflow` / `import_tensorflow_datasets` below, at the moment they
are used, and a missing package becomes one clear `ImportError` naming the
extra to install. This module must not import anything heavy itself.
"""

import importlib
import importlib.util

_EXTRAS = (
    "`pip install keras-lowrank[cpu]` (tensorflow-cpu), "
    "`pip install keras-lowrank[gpu]` (tensorflow with CUDA) or "
    "`pip install keras-lowrank[tensorflow]`"
)


def has_tensorflow():
    """Whether TensorFlow is installed (without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


def _missing(package, feature):
    return (
        f"{feature}: `{package}` is not installed (it is needed here). The core of "
        f"keras_lowrank runs on JAX and PyTorch without it; install it with "
        f"one of the TensorFlow extras: {_EXTRAS}."
    )


def import_tensorflow(feature="This feature"):
    """Imports and returns `tensorflow`, or raises one clear `ImportError`.

    Args:
        feature: what needs TensorFlow, for the message (e.g.
            "`keras_lowrank.data.load_dataset`").
    """
    if not has_tensorflow():
        raise ImportError(_missing("tensorflow", feature))
    return importlib.import_module("tensorflow")


def import_tensorflow_datasets(feature="This feature"):
    """Imports and returns `tensorflow_datasets`, or raises `ImportError`."""
    import_tensorflow(feature)
    if importlib.util.find_spec("tensorflow_datasets") is None:
        raise ImportError(_missing("tensorflow-datasets", feature))
    return importlib.import_module("tensorflow_datasets")


def require_tensorflow(feature="This feature"):
    """Raises `ImportError` with install instructions if TensorFlow is absent."""
    if not has_tensorflow():
        raise ImportError(_missing("tensorflow", feature))


def require_quantizer(feature="This feature"):
    """Raises `ImportError` naming the extra if AI Edge Quantizer is absent."""
    if importlib.util.find_spec("ai_edge_quantizer") is None:
        raise ImportError(
            f"{feature}: `ai-edge-quantizer` (which writes int4 weights into a LiteRT file) is not "
            "installed: `pip install keras-lowrank[export]` (the [hub] extra includes it)."
        )


def require_litert(feature="This feature"):
    """Raises `ImportError` naming the extra if `ai_edge_litert` (LiteRT) is absent."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        raise ImportError(
            f"{feature}: `ai-edge-litert` (the LiteRT interpreter, which runs and checks the file) is "
            "not installed: `pip install keras-lowrank[export]` (the [hub] extra includes it)."
        )
