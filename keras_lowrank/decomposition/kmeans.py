"""k-means and product quantization of embedding tables.

`product_quantize` splits the `d` columns of a table into `groups` equal
sub-vectors and clusters each group's sub-vectors into `codes` codewords
(k-means++ seeding, then Lloyd iterations), optionally weighting rows by
token counts; `assign_codes` finds the nearest codeword of every
sub-vector; `kmeans` is the one-group case. The codebooks and codes feed
`keras_lowrank.CodebookEmbedding`.

Costs: one Lloyd iteration computes the distances of every sub-vector to
every codeword of its group, `V * codes * d` multiply-adds, in row chunks
whose distance block holds at most `_CHUNK_ELEMENTS` floats, so the memory
beyond the table is `O(V * groups)` (labels) plus one chunk, whatever `V`.
The k-means++ seeding takes `codes` sequential steps of `O(V * d)` each.

This module is pure numpy: it must not import Keras or TensorFlow, and it
never modifies the table it is given.
"""

import collections
import numbers

import numpy as np

from keras_lowrank.decomposition import factorize as factorize_lib
from keras_lowrank.decomposition import rank as rank_lib

KMeans = collections.namedtuple("KMeans", ["centroids", "labels", "inertia"])
KMeans.__doc__ = """Result of `kmeans`.

Fields:
    centroids: float32 array [k, d].
    labels: int32 array [n], the nearest centroid of each point.
    inertia: float, `sum_i w_i ||x_i - centroids[labels_i]||^2` (`w_i = 1`
        without weights).
"""

ProductQuantization = collections.namedtuple(
    "ProductQuantization", ["codebooks", "codes", "squared_error"]
)
ProductQuantization.__doc__ = """Result of `product_quantize`.

Fields:
    codebooks: float32 array [groups, codes, d / groups].
    codes: int32 array [V, groups]; row `i` is approximated by
        `concat_g codebooks[g, codes[i, g]]`.
    squared_error: float, the unweighted reconstruction error
        `sum_i ||table_i - approximation_i||^2`.
"""

DEFAULT_ITERATIONS = 25

# Floats in one chunk's distance block [groups, rows, codes]: 4 MiB, small
# enough to stay in cache between the matmul and the argmin.
_CHUNK_ELEMENTS = 1 << 20

# k-means++ seeds from at most this many rows per codeword.
_SEED_ROWS_PER_CODE = 64


def product_quantize(
    table, groups, codes, *, row_weights=None, iterations=DEFAULT_ITERATIONS, seed=0
):
    """Product-quantizes a table: one k-means per group of columns.

    Row `i` of the `[V, d]` table is split into `groups` sub-vectors of
    `d / groups` columns; sub-vector `g` of every row is clustered into
    `codes` codewords by weighted k-means, minimizing
    `sum_i w_i ||table_i[g] - codebooks[g, codes[i, g]]||^2` for each group
    (so the sum over groups is the weighted squared error of the rows).

    Seeding is k-means++ (Arthur and Vassilvitskii, 2007): the first
    codeword is a row drawn with probability proportional to its weight,
    each next one a row drawn with probability proportional to
    `w_i * D_i^2`, `D_i` its distance to the nearest codeword chosen so far.
    Then at most `iterations` Lloyd iterations (assign each sub-vector to
    its nearest codeword, move each codeword to the weighted mean of its
    sub-vectors), stopping early once no assignment changes. A codeword left
    without sub-vectors moves to the sub-vector farthest from its codeword,
    so no codeword is wasted. The returned codes are the nearest codewords
    of the returned codebooks. The result depends only on the inputs and
    `seed`.

    Args:
        table: 2-D array [V, d] of finite values.
        groups: Integer dividing `d`: the number of sub-vectors per row.
        codes: Integer >= 2: codewords per group.
        row_weights: Optional 1-D array of V non-negative weights, not all
            zero (for example token counts): frequent rows are then
            reconstructed more accurately.
        iterations: Non-negative integer, the most Lloyd iterations.
        seed: Non-negative integer seed of the k-means++ draws.

    Returns:
        A `ProductQuantization(codebooks, codes, squared_error)`.

    Raises:
        ValueError: on an invalid table, `groups`, `codes`, `row_weights`,
            `iterations` or `seed`.
    """
    table = factorize_lib.validate_table(table)
    groups = rank_lib._check_dim(groups, "groups")
    if table.shape[1] % groups:
        raise ValueError(
            f"Expected `groups` to divide the table width {table.shape[1]}, "
            f"received: groups={groups}"
        )
    codes = _check_codeword_count(codes, "codes")
    return _product_quantize(
        _grouped(table, groups),
        _weights(row_weights, table.shape[0]),
        codes,
        _check_non_negative_int(iterations, "iterations"),
        _check_non_negative_int(seed, "seed"),
    )


def kmeans(points, k, *, row_weights=None, iterations=DEFAULT_ITERATIONS, seed=0):
    """Weighted k-means of the rows of `points` (k-means++ then Lloyd).

    The one-group case of `product_quantize`, which documents the seeding,
    the iterations and the arguments.

    Args:
        points: 2-D array [n, d] of finite values.
        k: Integer >= 2, the number of centroids.
        row_weights: Optional 1-D array of n non-negative weights.
        iterations: Non-negative integer, the most Lloyd iterations.
        seed: Non-negative integer seed.

    Returns:
        A `KMeans(centroids, labels, inertia)`.
    """
    points = factorize_lib.validate_table(points, name="points")
    weights = _weights(row_weights, points.shape[0])
    result = _product_quantize(
        _grouped(points, 1),
        weights,
        _check_codeword_count(k, "k"),
        _check_non_negative_int(iterations, "iterations"),
        _check_non_negative_int(seed, "seed"),
    )
    labels = result.codes[:, 0]
    centroids = result.codebooks[0]
    if row_weights is not None:
        # `_weights` rescaled them to a largest weight of 1.
        weights = np.asarray(row_weights, np.float64)
    residual = np.asarray(points, np.float64) - centroids[labels]
    return KMeans(centroids, labels, float(weights @ np.sum(residual**2, axis=1)))


def assign_codes(table, codebooks):
    """The nearest codeword of every sub-vector of `table`.

    Args:
        table: 2-D array [V, d].
        codebooks: 3-D array [groups, codes, d / groups].

    Returns:
        An int32 array [V, groups]: `argmin_k ||table_i[g] - codebooks[g, k]||`
        (the first such `k` on ties).
    """
    table = factorize_lib.validate_table(table)
    codebooks = np.asarray(codebooks)
    if (
        codebooks.ndim != 3
        or codebooks.shape[0] * codebooks.shape[2] != table.shape[1]
    ):
        raise ValueError(
            "Expected `codebooks` of shape [groups, codes, d / groups] with "
            f"groups * (d / groups) = {table.shape[1]}, received: "
            f"codebooks.shape={codebooks.shape}"
        )
    points = _grouped(table, codebooks.shape[0])
    return _assign(points, codebooks.astype(np.float32))[0]


def balanced_rotation(table, groups, *, row_weights=None):
    """An orthogonal rotation that spreads a table's variance evenly over groups.

    The non-parametric start of optimized product quantization (Ge, He, Ke
    and Sun, 2013): the eigenvectors of the (weighted, uncentered) second
    moment `sum_i w_i table_i^T table_i`, assigned to the `groups` groups by
    eigenvalue allocation, round by round: each round deals the next
    `groups` directions in decreasing order of eigenvalue, one to every
    group, each to the group (among those without one this round) whose
    product of eigenvalues is smallest so far. Dealing in rounds makes the
    allocation independent of the scale of the table and the weights (a
    greedy "smallest product among the groups not full" is not: with
    eigenvalues below 1, a group's product shrinks as it fills, so the
    first group would take all the largest directions). Product
    quantization of `table @ rotation` then codes groups of about equal
    variance whose dimensions are uncorrelated, rather than the table's own
    columns, whose variance may sit in a few groups (trained embedding
    tables concentrate it in a few directions).

    Args:
        table: 2-D array [V, d].
        groups: Integer dividing `d`.
        row_weights: Optional non-negative weights, one per row (for example
            token counts): frequent rows then decide the directions.

    Returns:
        A float32 orthogonal array [d, d]: column `j` is the direction that
        becomes column `j` of the rotated table; the columns of group `g`
        are `g * d / groups` to `(g + 1) * d / groups - 1`. Deterministic for
        a given table.

    References:
        - [Ge, He, Ke and Sun, 2013. Optimized Product Quantization for
          Approximate Nearest Neighbor Search](https://doi.org/10.1109/CVPR.2013.379)
          (CVPR 2013)
    """
    table = factorize_lib.validate_table(table)
    num_rows, dim = table.shape
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) \
            or groups <= 0 or dim % groups:
        raise ValueError(
            f"Expected `groups` to be a positive integer dividing d={dim}, "
            f"received: groups={groups!r}"
        )
    weights = _weights(row_weights, num_rows)
    points = np.asarray(table, np.float64)
    moment = (points * weights[:, None]).T @ points
    eigenvalues, eigenvectors = np.linalg.eigh(moment)
    order = np.argsort(-eigenvalues, kind="stable")
    # Log-products; a zero eigenvalue counts as a tiny one so that it still
    # tips the balance.
    logs = np.log(np.maximum(eigenvalues[order], np.finfo(np.float64).tiny))
    members = [[] for _ in range(groups)]
    totals = np.zeros(groups)
    for start in range(0, dim, groups):
        waiting = list(range(groups))
        for index, log in zip(order[start:start + groups], logs[start:start + groups]):
            group = min(waiting, key=lambda g: (totals[g], g))
            waiting.remove(group)
            members[group].append(index)
            totals[group] += log
    columns = [index for group in members for index in group]
    return eigenvectors[:, columns].astype(np.float32)


def _product_quantize(points, weights, codes, iterations, seed):
    """`product_quantize` on validated arguments; points [V, G, s]."""
    rng = np.random.default_rng(seed)
    codebooks = _kmeans_plus_plus(points, weights, codes, rng)
    labels, distances = _assign(points, codebooks)
    for _ in range(iterations):
        codebooks = _update(points, weights, labels, distances, codebooks)
        new_labels, distances = _assign(points, codebooks)
        converged = np.array_equal(new_labels, labels)
        labels = new_labels
        if converged:
            break
    return ProductQuantization(
        codebooks=codebooks,
        codes=labels,
        squared_error=_squared_error(points, codebooks, labels),
    )


def _weights(row_weights, num_rows):
    if row_weights is None:
        return np.ones(num_rows)
    return factorize_lib._check_row_weights(row_weights, num_rows)


def _check_codeword_count(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
        raise ValueError(
            f"Expected `{name}` to be an integer >= 2, received: {name}={value!r}"
        )
    return int(value)


def _grouped(table, groups):
    """A [V, groups, d / groups] float32 view (or copy) of the table."""
    return np.asarray(table, np.float32).reshape(table.shape[0], groups, -1)


def _chunk_rows(groups, codes):
    return max(1, _CHUNK_ELEMENTS // (groups * codes))


def _assign(points, codebooks):
    """Nearest codeword per sub-vector: labels [V, G] and squared distances."""
    num_rows, groups, sub_dim = points.shape
    codes = codebooks.shape[1]
    labels = np.empty((num_rows, groups), np.int32)
    distances = np.empty((num_rows, groups), np.float32)
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2. The argmin needs only the last
    # two terms, which one matmul of [x, 1] by [-2 c, ||c||^2] gives: a single
    # pass over the [G, rows, K] block, on BLAS.
    augmented_codebooks = np.concatenate(
        [-2.0 * codebooks, np.sum(codebooks**2, axis=2, keepdims=True)], axis=2
    ).transpose(0, 2, 1)  # [G, s + 1, K]
    step = _chunk_rows(groups, codes)
    chunk = np.ones((groups, step, sub_dim + 1), np.float32)
    for start in range(0, num_rows, step):
        rows = points[start : start + step]
        count = rows.shape[0]
        chunk[:, :count, :sub_dim] = rows.transpose(1, 0, 2)
        scores = np.matmul(chunk[:, :count], augmented_codebooks)  # [G, c, K]
        best = np.argmin(scores, axis=2)  # [G, c]
        nearest = np.take_along_axis(scores, best[..., None], axis=2)[..., 0]
        vectors = chunk[:, :count, :sub_dim]
        norms = np.einsum("gcs,gcs->gc", vectors, vectors)
        labels[start : start + count] = best.T
        distances[start : start + count] = np.maximum(nearest + norms, 0.0).T
    return labels, distances


def _squared_error(points, codebooks, labels):
    """Exact `sum ||x - c||^2` over all sub-vectors, in row chunks."""
    total = 0.0
    step = _chunk_rows(points.shape[1], codebooks.shape[1])
    group_index = np.arange(points.shape[1])
    for start in range(0, points.shape[0], step):
        decoded = codebooks[group_index, labels[start : start + step]]
        residual = points[start : start + step].astype(np.float64) - decoded
        total += float(np.sum(residual**2))
    return total


def _update(points, weights, labels, distances, codebooks):
    """One Lloyd update: every codeword to the weighted mean of its members."""
    num_rows, groups, sub_dim = points.shape
    codes = codebooks.shape[1]
    flat = (labels + codes * np.arange(groups, dtype=np.int32)).ravel()
    counts = np.bincount(
        flat, weights=np.repeat(weights, groups), minlength=groups * codes
    ).reshape(groups, codes)
    sums = np.empty((groups, codes, sub_dim))
    for j in range(sub_dim):
        sums[:, :, j] = np.bincount(
            flat, weights=(weights[:, None] * points[:, :, j]).ravel(),
            minlength=groups * codes,
        ).reshape(groups, codes)
    updated = codebooks.astype(np.float64)
    filled = counts > 0
    updated[filled] = sums[filled] / counts[filled][:, None]
    for group in np.unique(np.nonzero(~filled)[0]):
        empty = np.flatnonzero(~filled[group])
        # Farthest sub-vectors (of rows that carry weight) first.
        reach = np.where(weights > 0, distances[:, group], -1.0)
        farthest = np.argsort(-reach, kind="stable")[: len(empty)]
        updated[group, empty[: len(farthest)]] = points[farthest, group]
    return updated.astype(np.float32)


def _kmeans_plus_plus(points, weights, codes, rng):
    """k-means++ seeding of every group at once: codebooks [G, K, s]."""
    num_rows, groups, sub_dim = points.shape
    if num_rows > _SEED_ROWS_PER_CODE * codes:
        # Each of the `codes` sequential draws touches every row: seed from
        # a uniform sample of rows (keeping their weights), as large
        # quantizers do; the Lloyd iterations then use every row.
        sample = np.sort(
            rng.choice(num_rows, _SEED_ROWS_PER_CODE * codes, replace=False)
        )
        if np.any(weights[sample] > 0):
            points, weights = points[sample], weights[sample]
            num_rows = len(sample)
    codebooks = np.empty((groups, codes, sub_dim), np.float32)
    group_index = np.arange(groups)
    chosen = _draw(np.broadcast_to(weights, (groups, num_rows)), rng)
    codebooks[:, 0] = points[chosen, group_index]
    nearest = _distances_to(points, codebooks[:, 0])
    for k in range(1, codes):
        potential = weights * nearest
        # Fewer distinct weighted sub-vectors than codewords: draw by weight
        # alone (the extra codewords duplicate existing ones).
        exhausted = ~(np.sum(potential, axis=1) > 0)
        if np.any(exhausted):
            potential[exhausted] = weights
        chosen = _draw(potential, rng)
        codebooks[:, k] = points[chosen, group_index]
        np.minimum(nearest, _distances_to(points, codebooks[:, k]), out=nearest)
    return codebooks


def _distances_to(points, centers):
    """Squared distances [G, V] of every sub-vector to its group's center."""
    residual = points - centers[None]
    # einsum: several times faster than `sum(axis=2)` over a short axis.
    return np.einsum("vgs,vgs->gv", residual, residual).astype(np.float64)


def _draw(potential, rng):
    """One row per group (row of `potential` [G, V]), probability ∝ potential."""
    cumulative = np.cumsum(potential, axis=1)
    targets = rng.random(potential.shape[0]) * cumulative[:, -1]
    chosen = [
        np.searchsorted(row, target, side="right")
        for row, target in zip(cumulative, targets)
    ]
    return np.minimum(chosen, potential.shape[1] - 1)


def _check_non_negative_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(
            f"Expected `{name}` to be a non-negative integer, received: {name}={value!r}"
        )
    return int(value)
