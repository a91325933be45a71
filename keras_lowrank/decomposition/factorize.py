"""Turns an embedding table into the two factors of a low-rank embedding.

`factorize_table` computes the lookup factor A [V, r] and the projection
B [r, d] with `A @ B` the best rank-r approximation of the table (optionally
under per-row weights), and decides where the singular values go. It also
validates tables (`validate_table`) for every caller in the package.

This module is pure numpy: it must not import Keras or TensorFlow, and it never
modifies the table it is given.
"""

import collections
import numbers

import numpy as np

from keras_lowrank.decomposition import rank as rank_lib
from keras_lowrank.decomposition import svd as svd_lib

Factorization = collections.namedtuple(
    "Factorization", ["lookup", "projection", "singular_values", "rank", "energy"]
)
Factorization.__doc__ = """Low-rank factors of a table: `table ~= lookup @ projection`.

Fields:
    lookup: float32 array [V, rank], the factor A looked up by token id.
    projection: float32 array [rank, d], the factor B.
    singular_values: float64 array of all `min(V, d)` singular values of the
        (weighted, if `row_weights` was given) table, descending.
    rank: the rank r.
    energy: share of `sum(singular_values**2)` kept at this rank, in [0, 1].
"""

SPLITS = ("balanced", "right")

# Rows are checked for non-finite values in blocks to avoid a V x d mask.
_CHECK_BLOCK_ROWS = 65536


def validate_table(table, name="table"):
    """Checks that `table` is a finite 2-D real array and returns it.

    The check runs in row blocks, so it needs no V x d temporary. Integer and
    boolean tables are converted to float32; float16, bfloat16 (`ml_dtypes`),
    float32 and float64 tables are returned as they are (no copy).

    Args:
        table: array-like of shape [V, d].
        name: the argument name used in error messages.

    Returns:
        The table as a 2-D `numpy.ndarray`.

    Raises:
        ValueError: if the table is not 2-D, empty, not real-valued, or holds
            NaN or infinite values (the message says how many and where the
            first one is).
    """
    array = np.asarray(table)
    if array.ndim != 2:
        raise ValueError(
            f"Expected `{name}` to be a 2-D array [V, d], received an array "
            f"of shape {array.shape}"
        )
    try:
        array = svd_lib._as_real_table(array)
    except ValueError as error:
        raise ValueError(str(error).replace("`table`", f"`{name}`")) from None
    count = 0
    first = None
    for start in range(0, array.shape[0], _CHECK_BLOCK_ROWS):
        block = array[start : start + _CHECK_BLOCK_ROWS]
        bad = ~np.isfinite(block)
        block_count = int(bad.sum())
        if block_count and first is None:
            row, col = np.argwhere(bad)[0]
            first = (start + int(row), int(col))
        count += block_count
    if count:
        raise ValueError(
            f"Expected `{name}` to hold only finite values, found {count} "
            f"NaN or infinite value(s) in a table of shape {array.shape}; the "
            f"first is at row {first[0]}, column {first[1]}."
        )
    return array


def factorize_table(table, rank, *, split="balanced", row_weights=None, method="auto"):
    """Factorizes a table into `lookup @ projection` of rank `rank`.

    Without weights, `lookup @ projection` is the truncated SVD `U_r S_r Vt_r`,
    the best rank-r approximation in Frobenius norm (Eckart-Young), so the
    squared error is the sum of the discarded squared singular values.

    Where the singular values go (`split`):

    - `"balanced"` (default): `A = U_r S_r^(1/2)`, `B = S_r^(1/2) Vt_r`. Both
      factors have the same scale (`A^T A = B B^T = S_r`). During the
      fine-tune the gradient of one factor is proportional to the other
      (`dL/dA = dL/dY B^T`, `dL/dB = A^T dL/dY`), so equal scales give both
      factors well-conditioned updates of comparable size under one learning
      rate, instead of one factor barely moving while the other takes steps
      scaled by `s_max`. The rows of A then also have comparable magnitudes
      across ranks, which suits per-row quantization of the lookup factor.
    - `"right"`: `A = U_r` (orthonormal columns), `B = S_r Vt_r`: all the scale
      on the projection, as in the paper's plain SVD initialization.

    Frequency-aware factorization (`row_weights`): with weights `w_i >= 0`
    (e.g. token counts) the factors minimize the weighted error
    `sum_i w_i ||E_i - A_i B||^2`, so frequent words are reconstructed more
    accurately. The solution comes from the SVD of `diag(sqrt(w)) E`
    (computed without materializing it): `B` spans its top right singular
    vectors, and each row of `A` holds the coefficients of the orthogonal
    projection of `E_i` onto that subspace, `A_i = E_i Vt_r^T` (scaled by
    `S_r^-1/2` for "balanced", `S_r^-1` for "right"). This equals the textbook
    `A = diag(1/sqrt(w)) U_r S_r^(1/2)` for positive weights, but never divides
    by a weight: rows with zero weight get their best approximation in the
    chosen subspace (the limit as their weight goes to 0) instead of
    infinities, so no weight floor is needed. `singular_values` and `energy`
    then describe the weighted table.

    Args:
        table: 2-D array [V, d] (float16, bfloat16, float32 or float64).
        rank: the rank r, an integer in `[1, min(V, d)]`. Use
            `resolve_rank` to turn a compression ratio or an energy share into
            a rank that saves parameters; this function does not require it.
        split: `"balanced"` or `"right"`, see above.
        row_weights: optional 1-D array of V non-negative finite weights, not
            all zero.
        method: SVD backend passed to `truncated_svd` (default `"auto"`).

    Returns:
        A `Factorization(lookup, projection, singular_values, rank, energy)`.

    Raises:
        ValueError: on an invalid table, rank, split or weights.

    Example:

    >>> import numpy as np
    >>> table = np.random.default_rng(0).normal(size=(1000, 50)).astype("float32")
    >>> f = factorize_table(table, 10)
    >>> f.lookup.shape, f.projection.shape
    ((1000, 10), (10, 50))
    """
    table = validate_table(table)
    num_rows, num_cols = table.shape
    if split not in SPLITS:
        raise ValueError(
            f"Expected `split` to be one of {SPLITS}, received: split={split!r}"
        )
    full_rank = min(num_rows, num_cols)
    if (
        isinstance(rank, bool)
        or not isinstance(rank, numbers.Integral)
        or not 1 <= rank <= full_rank
    ):
        raise ValueError(
            f"Expected `rank` to be an integer in [1, {full_rank}] for a table "
            f"of shape {table.shape}, received: rank={rank!r}"
        )
    rank = int(rank)
    # Tables far from unit magnitude (float32 subnormals around 1e-44, or
    # huge values) lose the whole spectrum to under/overflow in the Gram
    # product and the float32 factors: factorize the table scaled to a peak
    # of 1 and scale the factors back (the SVD is exactly scale-equivariant).
    table, magnitude = _unit_magnitude(table)

    if row_weights is None:
        result, s_all, _ = svd_lib._truncated_svd(table, rank, method=method)
        u = result.u.astype(np.float64)
        s, vt = result.s, result.vt.astype(np.float64)
        if split == "balanced":
            root = np.sqrt(s)
            lookup, projection = u * root, root[:, None] * vt
        else:
            lookup, projection = u, s[:, None] * vt
    else:
        scale = np.sqrt(_check_row_weights(row_weights, num_rows))
        if num_rows < num_cols:
            raise ValueError(
                "`row_weights` needs a table with at least as many rows as "
                f"columns, received a table of shape {table.shape}"
            )
        result, s_all, _ = svd_lib._truncated_svd(
            table, rank, method=method, row_scale=scale
        )
        s, vt = result.s, result.vt.astype(np.float64)
        # A zero singular value gets a zero column in A (its B row is zero
        # too) rather than a division by zero.
        if split == "balanced":
            root = np.sqrt(s)
            coefficient_scale = svd_lib._safe_reciprocal(root)
            projection = root[:, None] * vt
        else:
            coefficient_scale = svd_lib._safe_reciprocal(s)
            projection = s[:, None] * vt
        right = vt.T * coefficient_scale
        lookup = np.empty((num_rows, rank), dtype=np.float32)
        for start, stop, block in svd_lib._blocks(table, None):
            lookup[start:stop] = block @ right

    if s_all is None:  # randomized backend: spectrum from the Gram route
        s_all = (
            svd_lib.singular_values(table)
            if row_weights is None
            else svd_lib._gram_eigh(table, scale)[1]
        )
    s_all = np.asarray(s_all, dtype=np.float64)
    if magnitude != 1.0:
        lookup = np.asarray(lookup, dtype=np.float64)
        projection = np.asarray(projection, dtype=np.float64)
        if split == "balanced":
            lookup = lookup * np.sqrt(magnitude)
            projection = projection * np.sqrt(magnitude)
        else:
            projection = projection * magnitude
        s_all = s_all * magnitude
    lookup = np.ascontiguousarray(lookup, dtype=np.float32)
    projection = np.ascontiguousarray(projection, dtype=np.float32)
    if s_all[0] > 0 and (not np.any(lookup) or not np.any(projection)):
        # Reporting the energy of factors that are exactly zero would claim
        # a share of a spectrum the layer does not hold.
        raise ValueError(
            "The factors of this table underflow to zero in float32 (largest "
            f"singular value {s_all[0]:.3g}); rescale the table, or use "
            '`split="balanced"`, received a table of shape '
            f"{(num_rows, num_cols)} with largest |value| {magnitude:.3g}"
        )
    return Factorization(
        lookup=lookup,
        projection=projection,
        singular_values=s_all,
        rank=rank,
        energy=rank_lib.energy_kept(s_all, rank),
    )


# Tables whose largest |value| lies outside [2**-60, 2**60] are rescaled.
_MAGNITUDE_RANGE = (2.0**-60, 2.0**60)


def _unit_magnitude(table):
    """Returns `(table, 1.0)`, or `(table / peak as float32, peak)` if extreme."""
    peak = 0.0
    for start in range(0, table.shape[0], _CHECK_BLOCK_ROWS):
        block = table[start : start + _CHECK_BLOCK_ROWS]
        if block.size:
            peak = max(peak, float(np.max(np.abs(block.astype(np.float64)))))
    low, high = _MAGNITUDE_RANGE
    if peak == 0.0 or low <= peak <= high:
        return table, 1.0
    scaled = np.empty(table.shape, dtype=np.float32)
    for start in range(0, table.shape[0], _CHECK_BLOCK_ROWS):
        stop = start + _CHECK_BLOCK_ROWS
        scaled[start:stop] = table[start:stop].astype(np.float64) / peak
    return scaled, peak


def _check_row_weights(row_weights, num_rows):
    weights = np.asarray(row_weights, dtype=np.float64)
    if weights.shape != (num_rows,):
        raise ValueError(
            f"Expected `row_weights` to be a 1-D array of length {num_rows} "
            f"(one weight per table row), received shape {weights.shape}"
        )
    invalid = ~np.isfinite(weights) | (weights < 0)
    if np.any(invalid):
        index = int(np.argmax(invalid))
        raise ValueError(
            "Expected `row_weights` to be finite and non-negative, found "
            f"{int(invalid.sum())} invalid value(s), the first: "
            f"row_weights[{index}]={float(weights[index])!r}"
        )
    if not np.any(weights > 0):
        raise ValueError(
            "Expected `row_weights` to have at least one positive weight, "
            "received all zeros"
        )
    # Only relative weights matter; dividing by the largest keeps the
    # weighted Gram product in range for weights near 1e160 or 1e-160
    # (which overflowed or underflowed to NaN factors).
    return weights / np.max(weights)
