"""Truncated SVD of embedding tables: fast, exact and memory-bounded.

Embedding tables are tall and skinny (V rows, one per word, and d = 50..1000
columns), which allows an exact SVD far faster than a general-purpose one.
This module computes `table ~= u @ diag(s) @ vt` with four interchangeable
backends and picks the right one automatically:

- `"gram"`: accumulates the d x d Gram matrix `G = E^T E` in float64 over row
  blocks, eigendecomposes it (`numpy.linalg.eigh`), takes `s = sqrt(eig)` and
  rebuilds `U = E V S^-1` block by block for the kept rank only. Two passes over
  the table, O(V d^2) flops in large BLAS-3 calls: about a second for a
  400,000 x 300 float32 table on two idle cores (measurements on a shared
  machine: `docs/svd_scaling.md`). Forming `G` squares the condition
  number, so singular values below about `sqrt(eps64) * s_max` lose their
  relative accuracy and the matching columns of `U` their orthogonality.
- `"qr"`: blocked TSQR. Each row block is QR-factored, the stacked R factors are
  QR-factored again and the small d x d R is SVD-ed; `U = Q U_R` is rebuilt
  block by block by recomputing each block's Q. Backward stable (full float64
  precision on every singular value, orthonormal `U` even for zero singular
  values), roughly 10x slower than `"gram"` (Householder QR runs far below
  the BLAS-3 speed of the Gram products).
- `"numpy"`: `numpy.linalg.svd(full_matrices=False)` on a float64 copy of the
  table. The reference; it needs O(V d) extra memory and is slow for large V.
- `"randomized"`: Halko, Martinsson and Tropp's randomized range finder with
  power iterations. Approximate; kept for comparison in the SVD benchmark.

`method="auto"` (the default) runs `"gram"` and checks the result: if the
smallest kept singular value is below `GRAM_RELATIVE_TOLERANCE * s_max` (a
rank-deficient or ill-conditioned table, or a rank that reaches into the
numerical noise of the spectrum) it recomputes with `"qr"`, which costs one more
pass only in that case. Wide tables (V < d) are handled by factorizing the
transpose.

Memory: never a V x V matrix, never a float64 copy of the whole table (except
the `"numpy"` reference). The working memory is one float64 row block (about
32 MiB), the d x d matrices, and the V x r output.

This module is pure numpy: it must not import Keras or TensorFlow.

References:
    - Halko, Martinsson and Tropp, "Finding structure with randomness:
      probabilistic algorithms for constructing approximate matrix
      decompositions", SIAM Review 2011. https://arxiv.org/abs/0909.4061
    - Demmel, Grigori, Hoemmen and Langou, "Communication-optimal parallel and
      sequential QR and LU factorizations" (TSQR), SIAM J. Sci. Comput. 2012.
      https://arxiv.org/abs/0808.2664
"""

import collections
import logging
import math
import numbers

import numpy as np

logger = logging.getLogger(__name__)

SVD = collections.namedtuple("SVD", ["u", "s", "vt"])
SVD.__doc__ = """A truncated SVD `table ~= u @ diag(s) @ vt`.

Fields:
    u: float32 array [V, r] with orthonormal columns (left singular vectors).
    s: float64 array [r], singular values in descending order.
    vt: float32 array [r, d] with orthonormal rows (right singular vectors).
"""

METHODS = ("auto", "gram", "qr", "numpy", "randomized")

# Gram loses relative accuracy on a singular value s_i like eps64 * (s_max /
# s_i)^2 and the orthogonality of U's columns likewise. With this threshold
# (sqrt(eps64) * 1000, about 1.5e-5) both stay below about 1e-6, i.e. at the
# level of the float32 factors we return; below it "auto" switches to QR.
GRAM_RELATIVE_TOLERANCE = 1000.0 * math.sqrt(np.finfo(np.float64).eps)

# One float64 row block: large enough for efficient BLAS-3 calls, small
# enough to stay cache-friendly and negligible next to the table.
_BLOCK_BYTES = 32 * 2**20

_RANDOMIZED_OVERSAMPLES = 10
_RANDOMIZED_POWER_ITERATIONS = 4


def truncated_svd(table, rank=None, *, method="auto"):
    """Computes the rank-`rank` truncated SVD of a 2-D table.

    The result is the best rank-`rank` approximation of `table` in Frobenius
    and spectral norm (Eckart-Young): `u @ diag(s) @ vt`. With the exact methods
    (`"auto"`, `"gram"`, `"qr"`, `"numpy"`) the discarded squared Frobenius
    error equals the sum of the discarded `s**2`.

    `method="auto"` uses the Gram-matrix method and falls back to blocked QR
    (TSQR) when the kept part of the spectrum is ill-conditioned: see the
    module docstring for when each method is used and what it costs. Columns
    of `u` for zero singular values (a rank-deficient table) are orthonormal
    with `"auto"`, `"qr"` and `"numpy"`; with an explicit `"gram"` they are
    zero instead of NaN.

    Args:
        table: 2-D array [V, d] of float16, bfloat16 (`ml_dtypes`), float32 or
            float64 values (other real dtypes are converted to float32). Any
            shape works; wide tables (V < d) are factorized via the transpose.
        rank: number of singular triplets to keep, `1 <= rank <= min(V, d)`.
            `None` keeps all `min(V, d)`.
        method: one of `"auto"`, `"gram"`, `"qr"`, `"numpy"`, `"randomized"`.

    Returns:
        An `SVD(u, s, vt)` namedtuple: `u` float32 [V, rank], `s` float64
        [rank] (descending), `vt` float32 [rank, d].

    Example:

    >>> import numpy as np
    >>> table = np.random.default_rng(0).normal(size=(1000, 20)).astype("float32")
    >>> u, s, vt = truncated_svd(table, rank=5)
    >>> u.shape, s.shape, vt.shape
    ((1000, 5), (5,), (5, 20))
    """
    result, _, _ = _truncated_svd(table, rank, method=method)
    return result


def singular_values(table):
    """Returns all `min(V, d)` singular values of `table`, descending, float64.

    Computed from the eigenvalues of the float64 Gram matrix (one pass, no V x V
    or float64 copy of the table). Values below about `sqrt(eps64) * s_max` are
    accurate only in absolute terms (to about `eps64 * s_max`), which is what
    energy-based rank choice (sums of `s**2`) needs.

    Args:
        table: 2-D array, as for `truncated_svd`.

    Returns:
        float64 array of shape `[min(V, d)]`.
    """
    table = _as_real_table(table)
    tall = table.T if table.shape[0] < table.shape[1] else table
    _, s = _gram_eigh(tall, row_scale=None)
    return s


def _truncated_svd(table, rank, *, method="auto", row_scale=None):
    """Returns `(SVD, all_singular_values_or_None, method_used)`.

    `row_scale` (float64 [V] or None) factorizes `diag(row_scale) @ table`
    without materializing it. The full spectrum is None for `"randomized"`.
    """
    if method not in METHODS:
        raise ValueError(
            f"Expected `method` to be one of {METHODS}, received: method={method!r}"
        )
    table = _as_real_table(table)
    num_rows, num_cols = table.shape
    full_rank = min(num_rows, num_cols)
    if rank is None:
        rank = full_rank
    if (
        isinstance(rank, bool)
        or not isinstance(rank, numbers.Integral)
        or not 1 <= rank <= full_rank
    ):
        raise ValueError(
            "Expected `rank` to be an integer in [1, min(V, d)] = "
            f"[1, {full_rank}] for a table of shape {table.shape}, "
            f"received: rank={rank!r}"
        )
    rank = int(rank)
    if row_scale is not None:
        row_scale = np.asarray(row_scale, dtype=np.float64)

    # Work on the tall orientation: a wide table's SVD is its transpose's.
    wide = num_rows < num_cols
    if wide:
        if row_scale is not None:
            raise ValueError("`row_scale` is only supported for tall tables.")
        table = table.T

    used = method
    if method in ("auto", "gram"):
        # The check needs only the spectrum: decide before building U, so a
        # fallback costs the Gram pass and nothing more.
        v_all, s_all = _gram_eigh(table, row_scale)
        if method == "auto" and not _gram_is_accurate(s_all, rank):
            logger.debug(
                "truncated_svd: kept spectrum ill-conditioned "
                "(s[r-1]/s[0] = %.3g < %.3g); recomputing with TSQR.",
                s_all[rank - 1] / s_all[0] if s_all[0] > 0 else 0.0,
                GRAM_RELATIVE_TOLERANCE,
            )
            u, s, vt, s_all = _tsqr_svd(table, rank, row_scale)
            used = "qr"
        else:
            u, s, vt = _gram_svd(table, v_all, s_all, rank, row_scale)
            used = "gram"
    elif method == "qr":
        u, s, vt, s_all = _tsqr_svd(table, rank, row_scale)
    elif method == "numpy":
        u, s, vt, s_all = _numpy_svd(table, rank, row_scale)
    else:
        u, s, vt = _randomized_svd(table, rank, row_scale)
        s_all = None

    if wide:
        u, vt = vt.T, u.T
    result = SVD(
        u=np.ascontiguousarray(u, dtype=np.float32),
        s=np.asarray(s, dtype=np.float64),
        vt=np.ascontiguousarray(vt, dtype=np.float32),
    )
    return result, s_all, used


def _gram_is_accurate(s_all, rank):
    """Whether Gram's kept singular triplets are accurate to ~1e-6."""
    if s_all[0] == 0.0:
        return False  # All-zero table: U is undefined from the Gram route.
    return s_all[rank - 1] >= GRAM_RELATIVE_TOLERANCE * s_all[0]


def _as_real_table(table):
    table = np.asarray(table)
    if table.ndim != 2:
        raise ValueError(
            "Expected `table` to be a 2-D array, received an array of shape "
            f"{table.shape}"
        )
    if table.size == 0:
        raise ValueError(
            f"Expected `table` to be non-empty, received shape {table.shape}"
        )
    if table.dtype.kind in "biu":
        table = table.astype(np.float32)
    elif table.dtype.kind not in "fV" or not _is_float_like(table.dtype):
        raise ValueError(
            "Expected `table` to hold real floating-point values, received "
            f"dtype={table.dtype}"
        )
    return table


def _is_float_like(dtype):
    if dtype.kind == "f":
        return True
    # ml_dtypes' bfloat16 (and friends) report kind "V" but cast to float64.
    try:
        np.zeros((), dtype=dtype).astype(np.float64)
    except (TypeError, ValueError):
        return False
    return dtype.itemsize <= 8


def _block_rows(num_cols):
    return max(1, _BLOCK_BYTES // (8 * max(1, num_cols)))


def _blocks(table, row_scale):
    """Yields `(start, stop, float64 block)` over row blocks of `table`."""
    step = _block_rows(table.shape[1])
    for start in range(0, table.shape[0], step):
        stop = min(start + step, table.shape[0])
        block = np.asarray(table[start:stop], dtype=np.float64)
        if row_scale is not None:
            # A new array: for a float64 table `block` is a view of the
            # caller's rows, which must not be scaled in place.
            block = block * row_scale[start:stop, None]
        yield start, stop, block


def _gram_eigh(table, row_scale):
    """Eigendecomposition of the float64 Gram matrix: (V descending, s)."""
    num_cols = table.shape[1]
    gram = np.zeros((num_cols, num_cols), dtype=np.float64)
    for _, _, block in _blocks(table, row_scale):
        gram += block.T @ block  # numpy dispatches `a.T @ a` to BLAS syrk.
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = slice(None, None, -1)
    # Rounding can make eigenvalues of a semi-definite matrix slightly negative.
    s = np.sqrt(np.clip(eigenvalues[order], 0.0, None))
    return eigenvectors[:, order], s


def _gram_svd(table, v_all, s_all, rank, row_scale):
    """U = E V S^-1 in row blocks, from the Gram eigendecomposition."""
    v = v_all[:, :rank]
    s = s_all[:rank]
    projection = v * _safe_reciprocal(s)  # zero columns for s = 0, not NaN
    u = np.empty((table.shape[0], rank), dtype=np.float32)
    for start, stop, block in _blocks(table, row_scale):
        u[start:stop] = block @ projection
    return u, s, v.T


def _tsqr_svd(table, rank, row_scale):
    # Pass 1: R factor of each row block, then the QR of the stacked R's.
    r_factors = []
    for _, _, block in _blocks(table, row_scale):
        r_factors.append(np.linalg.qr(block, mode="r"))
    stacked = np.concatenate(r_factors, axis=0)
    q_stack, r = np.linalg.qr(stacked, mode="reduced")
    del stacked
    u_r, s_all, vt = np.linalg.svd(r, full_matrices=False)
    # table = blockdiag(Q_i) @ q_stack @ u_r @ diag(s) @ vt, so block i of U is
    # Q_i @ (q_stack rows of block i) @ u_r[:, :rank].
    coefficients = q_stack @ u_r[:, :rank]
    del q_stack

    # Pass 2: recompute each block's Q (cheaper than storing V x d of them).
    u = np.empty((table.shape[0], rank), dtype=np.float32)
    offset = 0
    for (start, stop, block), r_block in zip(_blocks(table, row_scale), r_factors):
        q_block, r_again = np.linalg.qr(block, mode="reduced")
        rows = r_block.shape[0]
        if np.array_equal(r_again, r_block):
            u[start:stop] = q_block @ coefficients[offset : offset + rows]
        else:
            # LAPACK gave a (rounding-)different factorization the second
            # time; the stored coefficients no longer match this Q. Fall back
            # to U = E V S^-1 with TSQR's accurate V for this block.
            inverse = _safe_reciprocal(s_all[:rank])
            u[start:stop] = block @ (vt[:rank].T * inverse)
        offset += rows
    return u, s_all[:rank], vt[:rank], s_all


def _safe_reciprocal(values):
    """1 / values, with 0 where values == 0."""
    positive = values > 0
    return np.where(positive, 1.0 / np.where(positive, values, 1.0), 0.0)


def _numpy_svd(table, rank, row_scale):
    dense = np.asarray(table, dtype=np.float64)
    if row_scale is not None:
        dense = dense * row_scale[:, None]
    u, s_all, vt = np.linalg.svd(dense, full_matrices=False)
    return u[:, :rank], s_all[:rank], vt[:rank], s_all


def _randomized_svd(table, rank, row_scale, seed=0):
    num_rows, num_cols = table.shape
    width = min(rank + _RANDOMIZED_OVERSAMPLES, num_cols)
    rng = np.random.default_rng(seed)
    omega = rng.standard_normal((num_cols, width))

    def times(matrix):  # table @ matrix, [V, k]
        out = np.empty((num_rows, matrix.shape[1]), dtype=np.float64)
        for start, stop, block in _blocks(table, row_scale):
            out[start:stop] = block @ matrix
        return out

    def transpose_times(matrix):  # table.T @ matrix, [d, k]
        out = np.zeros((num_cols, matrix.shape[1]), dtype=np.float64)
        for start, stop, block in _blocks(table, row_scale):
            out += block.T @ matrix[start:stop]
        return out

    q = _orthonormalize(times(omega))
    for _ in range(_RANDOMIZED_POWER_ITERATIONS):
        # Re-orthonormalize between products so small directions survive.
        z = _orthonormalize(transpose_times(q))
        q = _orthonormalize(times(z))
    small = transpose_times(q).T  # q.T @ table, [k, d]
    u_small, s, vt = np.linalg.svd(small, full_matrices=False)
    u = q @ u_small[:, :rank]
    return u, s[:rank], vt[:rank]


def _orthonormalize(matrix):
    """Orthonormal basis of a tall [n, k] matrix's columns.

    CholeskyQR2 (two rounds of `Q = Y L^-T` with `L L^T = Y^T Y`) runs in
    BLAS-3 and is several times faster than Householder QR on tall matrices;
    it is accurate while `cond(Y) < ~1e7`. Householder QR takes over when the
    Cholesky factorization fails (rank-deficient or too ill-conditioned).
    """
    try:
        for _ in range(2):
            lower = np.linalg.cholesky(matrix.T @ matrix)
            matrix = matrix @ np.linalg.inv(lower).T
        if not np.all(np.isfinite(matrix)):
            raise np.linalg.LinAlgError("non-finite CholeskyQR result")
        return matrix
    except np.linalg.LinAlgError:
        return np.linalg.qr(matrix)[0]
