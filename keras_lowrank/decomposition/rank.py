"""Rank choice for low-rank factorization: by compression ratio or by energy.

A table of shape [V, d] replaced by factors A [V, r] and B [r, d] stores
r * (V + d) numbers instead of V * d, so it only saves parameters while
r < V * d / (V + d). Every way of choosing r lives here so that the layer, the
model surgery and the command line agree on it. A rank that saves nothing is an
error, never a silently bigger model.

This module is pure Python/numpy: it must not import Keras or TensorFlow.
"""

import fractions
import math
import numbers

import numpy as np


def max_useful_rank(input_dim, output_dim):
    """Returns the largest rank whose factors are smaller than the table.

    That is the largest `r` with `r * (input_dim + output_dim) <
    input_dim * output_dim`; 0 when no rank saves anything (tiny tables).

    Args:
        input_dim: number of rows V (vocabulary size), a positive integer.
        output_dim: number of columns d (embedding size), a positive integer.

    Returns:
        An `int >= 0`.

    Example:

    >>> max_useful_rank(10000, 300)
    291
    """
    input_dim = _check_dim(input_dim, "input_dim")
    output_dim = _check_dim(output_dim, "output_dim")
    return (input_dim * output_dim - 1) // (input_dim + output_dim)


def rank_for_compression(input_dim, output_dim, compression):
    """Returns the rank that removes a fraction `compression` of the parameters.

    `rank = max(1, floor((1 - compression) * V * d / (V + d)))`, so that the
    factors hold at most `(1 - compression)` of the table's `V * d` numbers.
    The arithmetic is exact (on the decimal value of `compression`), so
    `compression=0.9` never loses a rank to float rounding.

    Args:
        input_dim: number of rows V, a positive integer.
        output_dim: number of columns d, a positive integer.
        compression: fraction of parameters to remove, in the open interval
            (0, 1); e.g. 0.9 keeps 10% of the parameters.

    Returns:
        A positive `int`.

    Raises:
        ValueError: if `compression` is not in (0, 1), or if the table is too
            small for any rank to save parameters.

    Example:

    >>> rank_for_compression(10000, 300, 0.9)
    29
    """
    input_dim = _check_dim(input_dim, "input_dim")
    output_dim = _check_dim(output_dim, "output_dim")
    if (
        isinstance(compression, bool)
        or not isinstance(compression, numbers.Real)
        or not 0.0 < compression < 1.0
    ):
        raise ValueError(
            "Expected `compression` to be a number in the open interval (0, 1), "
            f"received: compression={compression!r}"
        )
    _check_compressible(input_dim, output_dim)
    kept = 1 - fractions.Fraction(repr(float(compression)))
    rank = math.floor(kept * input_dim * output_dim / (input_dim + output_dim))
    return max(1, rank)


def rank_for_energy(singular_values, energy):
    """Returns the smallest rank keeping a fraction `energy` of the spectrum.

    The smallest `r` with `sum(s[:r]**2) / sum(s**2) >= energy`, i.e. the
    rank-r approximation keeps at least that share of the table's squared
    Frobenius norm (its relative squared error is at most `1 - energy`).

    Args:
        singular_values: 1-D array of all singular values of the table
            (any order is accepted; they are sorted descending).
        energy: fraction in (0, 1] of `sum(s**2)` to keep.

    Returns:
        An `int` in `[1, len(singular_values)]`.

    Raises:
        ValueError: if `energy` is not in (0, 1], or the singular values are
            empty, negative, non-finite or all zero.

    Example:

    >>> rank_for_energy([3.0, 2.0, 1.0], 0.9)
    2
    """
    if (
        isinstance(energy, bool)
        or not isinstance(energy, numbers.Real)
        or not 0.0 < energy <= 1.0
    ):
        raise ValueError(
            "Expected `energy` to be a number in the interval (0, 1], "
            f"received: energy={energy!r}"
        )
    s = _check_singular_values(singular_values)
    squares = np.sort(s)[::-1] ** 2
    total = squares.sum()
    if total == 0.0:
        raise ValueError(
            "Expected `singular_values` to contain a positive value: an "
            "all-zero table has no energy to keep."
        )
    kept = np.cumsum(squares) / total
    # A relative slack of 1e-12 absorbs the rounding of the cumulative sum, so
    # that energy=1.0 selects the numerical rank rather than failing.
    rank = int(np.searchsorted(kept, float(energy) - 1e-12, side="left")) + 1
    return min(rank, len(squares))


def energy_kept(singular_values, rank):
    """Returns the share of `sum(s**2)` kept by the top `rank` singular values.

    By Eckart-Young this is `1 - ||E - E_r||_F^2 / ||E||_F^2` for the best rank-r
    approximation `E_r`. An all-zero table loses nothing: 1.0.

    Args:
        singular_values: 1-D array of all singular values of the table.
        rank: number of kept singular values, a positive integer (values above
            the number of singular values keep everything).

    Returns:
        A `float` in [0, 1].
    """
    rank = _check_rank_type(rank)
    s = _check_singular_values(singular_values)
    squares = np.sort(s)[::-1] ** 2
    total = squares.sum()
    if total == 0.0:
        return 1.0
    return float(min(1.0, squares[:rank].sum() / total))


def resolve_rank(
    input_dim,
    output_dim,
    *,
    rank=None,
    compression=None,
    energy=None,
    singular_values=None,
):
    """Returns the rank from exactly one of `rank`, `compression`, `energy`.

    This is the single place where the three ways of asking for a rank are
    checked and turned into an integer. Whatever the request, the resulting
    rank must save parameters (`rank * (V + d) < V * d`), otherwise a
    `ValueError` says so.

    Args:
        input_dim: number of rows V, a positive integer.
        output_dim: number of columns d, a positive integer.
        rank: an explicit positive integer rank.
        compression: fraction of parameters to remove, in (0, 1); see
            `rank_for_compression`.
        energy: fraction of spectral energy to keep, in (0, 1]; see
            `rank_for_energy`. Needs `singular_values`.
        singular_values: all singular values of the table (for `energy`),
            e.g. from `keras_lowrank.decomposition.singular_values(table)`.

    Returns:
        A positive `int` below `V * d / (V + d)`.

    Raises:
        ValueError: if not exactly one of `rank`, `compression`, `energy` is
            given, if the given one is invalid, or if the rank saves nothing.

    Example:

    >>> resolve_rank(10000, 300, compression=0.9)
    29
    """
    given = {
        name: value
        for name, value in (
            ("rank", rank),
            ("compression", compression),
            ("energy", energy),
        )
        if value is not None
    }
    if len(given) != 1:
        received = ", ".join(
            f"{name}={value!r}"
            for name, value in (
                ("rank", rank),
                ("compression", compression),
                ("energy", energy),
            )
        )
        raise ValueError(
            "Expected exactly one of `rank`, `compression` or `energy` to be "
            f"given, received: {received}"
        )
    input_dim = _check_dim(input_dim, "input_dim")
    output_dim = _check_dim(output_dim, "output_dim")
    limit = max_useful_rank(input_dim, output_dim)
    if rank is not None:
        rank = _check_rank_type(rank)
        if rank > limit:
            raise ValueError(
                f"Expected `rank` to save parameters for a {input_dim} x "
                f"{output_dim} table, i.e. rank * ({input_dim} + {output_dim}) "
                f"< {input_dim} * {output_dim} (rank <= {limit}), received: "
                f"rank={rank}"
            )
        return rank
    if compression is not None:
        return rank_for_compression(input_dim, output_dim, compression)
    if singular_values is None:
        raise ValueError(
            "Expected `singular_values` to be given together with `energy`, "
            f"received: energy={energy!r}, singular_values=None"
        )
    chosen = rank_for_energy(singular_values, energy)
    if chosen > limit:
        raise ValueError(
            f"Keeping energy={energy!r} of this {input_dim} x {output_dim} "
            f"table needs rank {chosen}, but only ranks <= {limit} save "
            "parameters. Ask for less `energy`, or a `rank`/`compression`."
        )
    return chosen


def _check_dim(value, name):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value <= 0
    ):
        raise ValueError(
            f"Expected `{name}` to be a positive integer, received: "
            f"{name}={value!r}"
        )
    return int(value)


def _check_rank_type(rank):
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank <= 0:
        raise ValueError(
            f"Expected `rank` to be a positive integer, received: rank={rank!r}"
        )
    return int(rank)


def _check_compressible(input_dim, output_dim):
    if max_useful_rank(input_dim, output_dim) < 1:
        raise ValueError(
            f"A {input_dim} x {output_dim} table is too small to compress: "
            f"even rank 1 stores {input_dim + output_dim} >= "
            f"{input_dim * output_dim} numbers."
        )


def _check_singular_values(singular_values):
    s = np.asarray(singular_values, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(
            "Expected `singular_values` to be a non-empty 1-D array, received "
            f"shape {s.shape}"
        )
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(
            "Expected `singular_values` to be finite and non-negative, "
            f"received: singular_values={s!r}"
        )
    return s
