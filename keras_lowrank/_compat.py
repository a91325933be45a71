"""Checks that a TensorFlow backend is installed before anything else is imported.

`keras_lowrank` is a TensorFlow add-on: like other add-ons it does not force a
second TensorFlow on a user who already has `tensorflow` or `tensorflow-cpu`,
so TensorFlow is an extra. This module turns a missing TensorFlow into one
clear message naming the extra to install. It must not import anything heavy
itself.
"""

_MISSING_TENSORFLOW = (
    "keras_lowrank needs TensorFlow, which is not installed. Install it with "
    "one of the extras: `pip install keras-lowrank[cpu]` (tensorflow-cpu) or "
    "`pip install keras-lowrank[gpu]` (tensorflow with CUDA), or install "
    "`tensorflow` yourself."
)


def require_tensorflow():
    """Raises `ImportError` with install instructions if TensorFlow is absent."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise ImportError(_MISSING_TENSORFLOW)
