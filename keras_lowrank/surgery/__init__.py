"""Model surgery: find embedding tables in any Keras model and replace them.

- `replace`: `find_embeddings`, `replace_layers` (atomic swaps, graph
  rebuilds), `copy_model` (a copy sharing no layer with its source).
- `factorize_embeddings`: swap trained `Embedding` tables for low-rank factors.
"""

from keras_lowrank.surgery.factorize_embeddings import factorize_embeddings
from keras_lowrank.surgery.replace import compile_like
from keras_lowrank.surgery.replace import copy_model
from keras_lowrank.surgery.replace import find_embeddings
from keras_lowrank.surgery.replace import replace_layers
from keras_lowrank.surgery.report import ConversionReport
from keras_lowrank.surgery.report import LayerConversion
from keras_lowrank.surgery.report import SkippedTable
