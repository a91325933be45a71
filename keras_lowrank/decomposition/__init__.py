"""Decomposition of embedding tables: truncated SVD, rank choice, factors.

Pure numpy (scipy optional): nothing here imports Keras or TensorFlow, so the
numerical core can be tested and benchmarked on its own.

- `svd`: `truncated_svd` (Gram / TSQR / numpy / randomized backends) and
  `singular_values`.
- `rank`: choosing a rank from a compression ratio or a spectral energy share.
- `factorize`: `factorize_table` (where the singular values go, frequency
  weights) and `validate_table`.
- `kmeans`: `product_quantize` (frequency-weighted k-means per group of
  dimensions, the codes and codebooks of a `CodebookEmbedding`) and
  `assign_codes`; `balanced_rotation` (optimized product quantization's
  rotation); `kmeans.kmeans` for one group.
"""

from keras_lowrank.decomposition.factorize import Factorization
from keras_lowrank.decomposition.factorize import factorize_table
from keras_lowrank.decomposition.factorize import validate_table
from keras_lowrank.decomposition.kmeans import assign_codes
from keras_lowrank.decomposition.kmeans import balanced_rotation
from keras_lowrank.decomposition.kmeans import product_quantize
from keras_lowrank.decomposition.rank import energy_kept
from keras_lowrank.decomposition.rank import max_useful_rank
from keras_lowrank.decomposition.rank import rank_for_compression
from keras_lowrank.decomposition.rank import rank_for_energy
from keras_lowrank.decomposition.rank import resolve_rank
from keras_lowrank.decomposition.svd import GRAM_RELATIVE_TOLERANCE
from keras_lowrank.decomposition.svd import SVD
from keras_lowrank.decomposition.svd import singular_values
from keras_lowrank.decomposition.svd import truncated_svd
