"""Compression of a model's embedding tables to a byte budget.

- `TableLayout` and `table_bytes` (the one description of a table and the
  one byte counter) live in `keras_lowrank.layers.table_layout`; they are
  re-exported here, where the planner and reports use them.
- `pruning`: `prune_vocabulary`, keep the most frequent rows.
- `planner`: budget -> candidate layouts (rows kept, rank, storage).
- `options`: the argument checks of `compress()`.
- `data`: the data checks of `compress()`, the ids reaching a table (token
  counts), the arguments that feed data to `fit`.
- `compress`: `compress()`, the measured best recipe as one call, and its
  `CompressionReport`.
"""

from keras_lowrank.compression.pruning import kept_ids
from keras_lowrank.compression.pruning import prune_vocabulary
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import table_bytes
from keras_lowrank.compression.compress import compress
from keras_lowrank.compression.compress import embedding_bytes
from keras_lowrank.compression.planner import Recipe
from keras_lowrank.compression.report import CandidateResult
from keras_lowrank.compression.report import CompressionReport
