"""Byte budgets of the reproduction's fixed recipes, on the library's table description.

The reproduction compares methods at equal *embedding bytes*. Every byte count
comes from `keras_lowrank.compression.TableLayout` (predicted) and
`keras_lowrank.table_bytes` (measured on the built layer), the library's one
owner of that fact; this module only adds the reproduction's float16 row (a
float32 table rounded to float16, counted at 2 bytes per entry) and the
sizing helpers its fixed recipes use. It must not train or import TensorFlow
at import time.
"""

import numpy as np

from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.kinds.low_rank import max_rank_for_bytes  # noqa: F401 - the recipes' rank rule
from keras_lowrank.layers.table_layout import max_rows_for_bytes  # noqa: F401 - the recipes' row rule


def float32_table_bytes(rows, dim):
    """Bytes of a float32 `rows x dim` table: the reference size."""
    return TableLayout(rows, dim).float32_bytes()


def dense_table_bytes(rows, dim, storage):
    """Bytes of a dense table stored as `storage` (float16 rounds a float32 table)."""
    if storage == "float16":
        return 2 * rows * dim
    return TableLayout(rows, dim, storage=storage).stored_bytes()


def low_rank_bytes(rows, dim, rank, storage):
    """Bytes of a `LowRankEmbedding` of `rows` rows with factors stored as `storage`."""
    return TableLayout(rows, dim, rank=rank, storage=storage).stored_bytes()


def variables_bytes(variables):
    """Sum of `size * itemsize` over variables (or arrays): the rest of a model."""
    total = 0
    for variable in variables:
        dtype = getattr(variable.dtype, "name", variable.dtype)
        total += int(np.prod(tuple(variable.shape), dtype=np.int64)) * np.dtype(str(dtype)).itemsize
    return total
