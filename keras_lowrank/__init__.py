"""keras_lowrank: online low-rank compression of Keras embedding tables.

Train a text classifier, replace its embedding table by the two factors of the
table's truncated SVD, fine-tune end to end (optionally with the cyclically
annealed learning rate and distillation from the uncompressed model), and
export to TFLite.

This file is the table of contents of the public API: one import per public
name. Subpackages hold the rest: `keras_lowrank.data` (bundled datasets,
vocabularies, word vectors), `keras_lowrank.models` (the paper's classifiers),
`keras_lowrank.decomposition` (SVD and rank choice), `keras_lowrank.export`.
"""

from keras_lowrank._compat import require_tensorflow as _require_tensorflow

_require_tensorflow()

# Layers.
from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.layers import PrunedEmbedding

# The main call: compress a model's embedding tables to a byte budget.
from keras_lowrank.compression import CompressionReport
from keras_lowrank.compression import TableLayout
from keras_lowrank.compression import compress
from keras_lowrank.compression import prune_vocabulary
from keras_lowrank.compression import table_bytes

# Rank choice and the decomposition behind it.
from keras_lowrank.decomposition import energy_kept
from keras_lowrank.decomposition import factorize_table
from keras_lowrank.decomposition import max_useful_rank
from keras_lowrank.decomposition import rank_for_compression
from keras_lowrank.decomposition import rank_for_energy
from keras_lowrank.decomposition import truncated_svd

# Model surgery.
from keras_lowrank.surgery import ConversionReport
from keras_lowrank.surgery import factorize_embeddings

# Learning-rate schedules.
from keras_lowrank.schedules import CyclicalLearningRate
from keras_lowrank.schedules import CyclicallyAnnealedLearningRate
from keras_lowrank.schedules import plot_schedules

# Deployment.
from keras_lowrank.export import ExportReport
from keras_lowrank.export import FoldReport
from keras_lowrank.export import export_tflite
from keras_lowrank.export import fold_projections

# Fine-tuning.
from keras_lowrank.training import Distiller
from keras_lowrank.training import distillation_loss

# Subpackages with their own tables of contents.
from keras_lowrank import data
from keras_lowrank import models

__version__ = "0.1.0"
