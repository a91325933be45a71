"""`factorize_table`: splits, frequency weights, and table validation."""

import ml_dtypes
import numpy as np
import pytest

from keras_lowrank.decomposition import factorize_table
from keras_lowrank.decomposition import validate_table

pytestmark = pytest.mark.backend_agnostic


def _table(rows=1200, cols=24, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, cols)) * np.linspace(1, 0.1, cols)).astype(
        np.float32
    )


@pytest.mark.parametrize("split", ["balanced", "right"])
def test_product_is_best_rank_r_approximation(split):
    table = _table()
    ref_s = np.linalg.svd(table.astype(np.float64), compute_uv=False)
    f = factorize_table(table, 6, split=split)
    assert f.lookup.shape == (1200, 6) and f.projection.shape == (6, 24)
    assert f.lookup.dtype == np.float32 and f.projection.dtype == np.float32
    error = np.sum((table - f.lookup @ f.projection).astype(np.float64) ** 2)
    np.testing.assert_allclose(error, np.sum(ref_s[6:] ** 2), rtol=1e-4)
    np.testing.assert_allclose(f.singular_values, ref_s, rtol=1e-8)
    assert f.rank == 6
    assert f.energy == pytest.approx(np.sum(ref_s[:6] ** 2) / np.sum(ref_s**2))


def test_balanced_split_has_equal_scales():
    f = factorize_table(_table(), 5, split="balanced")
    a_gram = f.lookup.T.astype(np.float64) @ f.lookup
    b_gram = f.projection.astype(np.float64) @ f.projection.T
    np.testing.assert_allclose(a_gram, b_gram, atol=1e-3 * a_gram.max())
    np.testing.assert_allclose(np.diag(a_gram), f.singular_values[:5], rtol=1e-5)


def test_right_split_has_orthonormal_lookup():
    f = factorize_table(_table(), 5, split="right")
    np.testing.assert_allclose(f.lookup.T @ f.lookup, np.eye(5), atol=1e-5)


def test_weighted_factorization_beats_unweighted_on_weighted_error():
    table = _table(seed=1)
    weights = np.random.default_rng(2).zipf(1.5, size=table.shape[0]).astype(float)

    def weighted_error(f):
        residual = (table - f.lookup @ f.projection).astype(np.float64)
        return np.sum(weights * np.sum(residual**2, axis=1))

    plain = factorize_table(table, 4)
    weighted = factorize_table(table, 4, row_weights=weights)
    assert weighted_error(weighted) < 0.9 * weighted_error(plain)
    # It is the weighted Eckart-Young optimum: SVD of diag(sqrt(w)) E.
    scaled = np.sqrt(weights)[:, None] * table.astype(np.float64)
    ref_s = np.linalg.svd(scaled, compute_uv=False)
    optimum = np.sum(ref_s[4:] ** 2)
    np.testing.assert_allclose(weighted_error(weighted), optimum, rtol=1e-4)


@pytest.mark.parametrize("method", ["auto", "gram", "qr", "numpy", "randomized"])
def test_weighted_factorization_leaves_a_float64_table_untouched(method):
    # A float64 table's row blocks are views of the caller's array: scaling
    # them in place once rescaled the caller's table, and every later fit of
    # it (the planner ranks many recipes on one table) saw a corrupted one.
    table = _table(seed=7).astype(np.float64)
    original = table.copy()
    weights = np.random.default_rng(8).zipf(1.5, size=table.shape[0]).astype(float)
    first = factorize_table(table, 4, row_weights=weights, method=method)
    np.testing.assert_array_equal(table, original)
    again = factorize_table(table, 4, row_weights=weights, method=method)
    np.testing.assert_array_equal(first.lookup @ first.projection, again.lookup @ again.projection)


@pytest.mark.parametrize("split", ["balanced", "right"])
def test_zero_weights_are_safe(split):
    table = _table(seed=3)
    weights = np.ones(table.shape[0])
    weights[::3] = 0.0
    f = factorize_table(table, 4, split=split, row_weights=weights)
    assert np.all(np.isfinite(f.lookup)) and np.all(np.isfinite(f.projection))
    # Zero-weight rows get their projection onto the chosen subspace.
    basis = np.linalg.qr(f.projection.T.astype(np.float64))[0]
    rows = table[::3].astype(np.float64)
    np.testing.assert_allclose(
        f.lookup[::3] @ f.projection, rows @ basis @ basis.T, atol=1e-4
    )


def test_unit_weights_match_unweighted():
    table = _table(seed=4)
    plain = factorize_table(table, 5)
    weighted = factorize_table(table, 5, row_weights=np.ones(table.shape[0]))
    np.testing.assert_allclose(
        plain.lookup @ plain.projection,
        weighted.lookup @ weighted.projection,
        atol=1e-4,
    )


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float64])
def test_dtypes(dtype):
    f = factorize_table(_table(seed=5).astype(dtype), 3)
    assert f.lookup.dtype == np.float32 and np.all(np.isfinite(f.lookup))


def test_randomized_method_still_reports_full_spectrum():
    f = factorize_table(_table(seed=6), 3, method="randomized")
    assert f.singular_values.shape == (24,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0}, "rank=0"),
        ({"rank": 25}, "rank=25"),
        ({"rank": 3, "split": "left"}, "split='left'"),
        ({"rank": 3, "row_weights": np.ones(5)}, "row_weights"),
        ({"rank": 3, "row_weights": -np.ones(1200)}, r"row_weights\[0\]=-1.0"),
        ({"rank": 3, "row_weights": np.zeros(1200)}, "all zeros"),
        ({"rank": 3, "method": "eig"}, "method='eig'"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        factorize_table(_table(), **kwargs)


def test_validate_table():
    table = _table(rows=10, cols=4)
    assert validate_table(table) is table
    bad = table.copy()
    bad[3, 2] = np.nan
    bad[7, 0] = np.inf
    with pytest.raises(ValueError, match="found 2 NaN or infinite.*row 3, column 2"):
        validate_table(bad, name="embeddings")
    with pytest.raises(ValueError, match="`weights` to be a 2-D"):
        validate_table(np.zeros((2, 3, 4)), name="weights")
    with pytest.raises(ValueError, match="dtype"):
        validate_table(np.array([["a"]]))
    assert validate_table(np.ones((3, 2), dtype=np.int64)).dtype == np.float32
    huge = np.full((2, 2), 1e300)  # finite in float64, must not be flagged
    assert validate_table(huge) is huge


@pytest.mark.parametrize("scale", [1e-44, 1e-30, 1e30])
@pytest.mark.parametrize("split", ["balanced", "right"])
def test_extreme_magnitude_tables_factorize_like_unit_ones(scale, split):
    from keras_lowrank.decomposition import factorize_table as factorize

    table = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    scaled = (table.astype(np.float64) * scale).astype(np.float32)
    got = factorize(scaled, 3, split=split)
    # Before: all-zero factors at 1e-44, reported as keeping 55% of the energy.
    assert np.any(got.lookup) and np.any(got.projection)
    reference = np.linalg.svd(scaled.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(got.singular_values, reference, rtol=1e-5)
    if split == "right" and scale == 1e-44:
        return  # B = S V^T is itself subnormal in float32: few bits left.
    product = got.lookup.astype(np.float64) @ got.projection.astype(np.float64)
    u, s, vt = np.linalg.svd(scaled.astype(np.float64), full_matrices=False)
    best = (u[:, :3] * s[:3]) @ vt[:3]
    np.testing.assert_allclose(product / scale, best / scale, atol=1e-5)


@pytest.mark.parametrize("weight", [1e160, 1e200, 1e-160, 1e-200])
def test_row_weights_are_relative(weight):
    from keras_lowrank.decomposition import factorize_table as factorize

    table = np.random.default_rng(1).normal(size=(60, 8)).astype(np.float32)
    weights = np.random.default_rng(2).uniform(0.5, 2.0, size=60)
    got = factorize(table, 3, row_weights=weights * weight)
    expected = factorize(table, 3, row_weights=weights)
    assert np.all(np.isfinite(got.lookup)) and np.all(np.isfinite(got.projection))
    np.testing.assert_allclose(
        got.lookup @ got.projection, expected.lookup @ expected.projection, atol=1e-5
    )
