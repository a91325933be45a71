"""keras_lowrank: online low-rank compression of Keras embedding tables.

This file is the table of contents of the public API: one import per public
name.
"""

from keras_lowrank._compat import require_tensorflow as _require_tensorflow

_require_tensorflow()

__version__ = "0.1.0"
