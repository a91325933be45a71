"""Byte accounting of embedding tables, and sizes that meet a byte budget.

The reproduction compares methods at equal *embedding bytes*, so every method
needs (a) the bytes its stored table takes and (b) the largest rank or
vocabulary that fits a budget. The formulas here mirror what is stored:
float32/float16 tables; Keras' int8/int4 `Embedding` (measured from small
quantized layers, so whatever Keras stores is counted); `LowRankEmbedding` in float32
or quantized (int8/int4 lookup with one float32 scale per row, int8
projection with one float32 scale per output column). The runner records the
bytes *measured* from the built layers (`measured_bytes`), and the tests
check that both agree. This module must not train or import TensorFlow at
import time.
"""

import math

import numpy as np

FLOAT32_BYTES = 4
SCALE_BYTES = 4  # every quantization scale is stored as float32


def float32_table_bytes(rows, dim):
    """Bytes of a float32 `rows x dim` table: the reference size."""
    return FLOAT32_BYTES * rows * dim


def dense_table_bytes(rows, dim, storage):
    """Bytes of an `Embedding` table stored as `storage`.

    float32 and float16 tables are `rows * dim` entries of 4 or 2 bytes.
    For `"int8"` and `"int4"` the bytes are those of Keras' own
    `Embedding.quantize(mode)` with its default settings, measured on two
    small layers of the same width (a per-row part and a fixed part), so
    that whatever Keras stores (codes, scales, zero points, group indices)
    is counted: in Keras 3.15, int8 keeps one float32 scale per row, and
    int4 packs two codes per byte with a float32 scale and an int8 zero
    point per row and group plus a float32 group index per column.

    Args:
        rows: number of rows (vocabulary size).
        dim: embedding width.
        storage: `"float32"`, `"float16"`, `"int8"` or `"int4"`.

    Returns:
        The number of bytes (int).
    """
    if storage == "float32":
        return 4 * rows * dim
    if storage == "float16":
        return 2 * rows * dim
    if storage in ("int8", "int4"):
        per_row, fixed = keras_quantized_table_cost(dim, storage)
        return rows * per_row + fixed
    raise ValueError(f"Unknown table storage {storage!r}")


_KERAS_COST = {}


def keras_quantized_table_cost(dim, mode):
    """`(bytes per row, fixed bytes)` of Keras' quantized `Embedding` of width `dim`."""
    if (dim, mode) not in _KERAS_COST:
        import keras

        sizes = []
        for rows in (2, 3):
            layer = keras.layers.Embedding(rows, dim)
            layer.build()
            layer.quantize(mode)
            sizes.append(variables_bytes(layer.weights))
        per_row = sizes[1] - sizes[0]
        _KERAS_COST[(dim, mode)] = (per_row, sizes[0] - 2 * per_row)
    return _KERAS_COST[(dim, mode)]


def low_rank_bytes(rows, dim, rank, storage):
    """Bytes of a `LowRankEmbedding` with factors stored as `storage`.

    Args:
        rows, dim: the table shape `(input_dim, output_dim)`.
        rank: the factorization rank.
        storage: `"float32"` (both factors), `"int8"` or `"int4"` (lookup
            codes plus a float32 scale per row; int8 projection plus a
            float32 scale per output column).

    Returns:
        The number of bytes (int).
    """
    if storage == "float32":
        return 4 * rank * (rows + dim)
    projection = rank * dim + SCALE_BYTES * dim
    if storage == "int8":
        return rows * rank + SCALE_BYTES * rows + projection
    if storage == "int4":
        return rows * math.ceil(rank / 2) + SCALE_BYTES * rows + projection
    raise ValueError(f"Unknown factor storage {storage!r}")


def max_rank_for_bytes(rows, dim, budget, storage):
    """Largest useful rank whose factors fit in `budget` bytes, or 0.

    The rank is capped at the largest rank that still stores fewer numbers
    than the dense table (`r * (rows + dim) < rows * dim`): a bigger rank is
    a bigger model, never a compression, even when quantized.
    """
    cap = (rows * dim - 1) // (rows + dim)
    best = 0
    for rank in range(1, cap + 1):
        if low_rank_bytes(rows, dim, rank, storage) <= budget:
            best = rank
        else:
            break
    return best


def max_rows_for_bytes(budget, bytes_per_row, fixed=0):
    """Largest number of rows such that `fixed + rows * bytes_per_row <= budget`."""
    if budget < fixed:
        return 0
    return int((budget - fixed) // bytes_per_row)


def measured_bytes(layer):
    """Counts the bytes of a built layer's variables at their stored dtype.

    An independent count of what a layer stores: every variable (trainable
    or not) at its dtype's item size. Keras' int4 tables are already packed
    two codes per int8 byte, so this counts them correctly. Uses the
    layer's own `storage_bytes()` when it has one (`LowRankEmbedding`), and
    falls back to this count otherwise.
    """
    if hasattr(layer, "storage_bytes"):
        return int(layer.storage_bytes())
    return variables_bytes(layer.weights)


def variables_bytes(variables):
    """Sum of `size * itemsize` over variables (or arrays)."""
    total = 0
    for variable in variables:
        dtype = variable.dtype
        dtype = getattr(dtype, "name", dtype)
        itemsize = np.dtype(str(dtype)).itemsize
        total += int(np.prod(tuple(variable.shape), dtype=np.int64)) * itemsize
    return total


def params_count(variables):
    """Number of stored numbers (codes count as numbers; scales included)."""
    return int(sum(np.prod(tuple(v.shape), dtype=np.int64) for v in variables))
