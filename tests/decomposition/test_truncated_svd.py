"""Exactness, robustness and memory of `truncated_svd` against numpy's SVD."""

import json
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from keras_lowrank.decomposition import singular_values
from keras_lowrank.decomposition import truncated_svd
from keras_lowrank.decomposition import svd as svd_lib

pytestmark = pytest.mark.backend_agnostic

EXACT_METHODS = ["auto", "gram", "qr", "numpy"]


def _table(rows=3000, cols=40, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    decay = np.linspace(1.0, 0.05, cols)
    return (rng.standard_normal((rows, cols)) * decay).astype(dtype)


def _with_spectrum(s, rows, seed=0):
    """A float64 table with exactly the singular values `s`."""
    rng = np.random.default_rng(seed)
    cols = len(s)
    u = np.linalg.qr(rng.standard_normal((rows, cols)))[0]
    v = np.linalg.qr(rng.standard_normal((cols, cols)))[0]
    return (u * s) @ v.T


def _orthonormality_error(u):
    return np.abs(u.T.astype(np.float64) @ u - np.eye(u.shape[1])).max()


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_singular_values_and_vectors_match_numpy(method):
    table = _table()
    ref_u, ref_s, ref_vt = np.linalg.svd(table.astype(np.float64), full_matrices=False)
    u, s, vt = truncated_svd(table, 10, method=method)
    assert u.dtype == np.float32 and vt.dtype == np.float32 and s.dtype == np.float64
    assert u.shape == (3000, 10) and s.shape == (10,) and vt.shape == (10, 40)
    np.testing.assert_allclose(s, ref_s[:10], rtol=1e-10)
    # Singular vectors are defined up to sign: compare the rank-r projectors.
    np.testing.assert_allclose(vt.T @ vt, ref_vt[:10].T @ ref_vt[:10], atol=1e-5)
    np.testing.assert_allclose(
        u * s @ vt, (ref_u[:, :10] * ref_s[:10]) @ ref_vt[:10], atol=1e-4
    )
    assert _orthonormality_error(u) < 1e-5


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_reconstruction_error_is_eckart_young_optimum(method):
    table = _table(seed=1).astype(np.float64)
    ref_s = np.linalg.svd(table, compute_uv=False)
    rank = 12
    u, s, vt = truncated_svd(table, rank, method=method)
    error = np.sum((table - (u.astype(np.float64) * s) @ vt.astype(np.float64)) ** 2)
    optimum = np.sum(ref_s[rank:] ** 2)
    # float32 factors add ~1e-7 relative error per entry on top of the optimum.
    np.testing.assert_allclose(error, optimum, rtol=1e-4)


def test_randomized_is_close_to_optimum():
    table = _table(seed=2)
    ref_s = np.linalg.svd(table.astype(np.float64), compute_uv=False)
    u, s, vt = truncated_svd(table, 10, method="randomized")
    error = np.sum((table - (u * s) @ vt).astype(np.float64) ** 2)
    assert error <= 1.01 * np.sum(ref_s[10:] ** 2)
    np.testing.assert_allclose(s, ref_s[:10], rtol=1e-2)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_exactly_low_rank_table_is_reproduced(method):
    rng = np.random.default_rng(3)
    table = (rng.standard_normal((2000, 6)) @ rng.standard_normal((6, 50))).astype(
        np.float32
    )
    u, s, vt = truncated_svd(table, 6, method=method)
    np.testing.assert_allclose((u * s) @ vt, table, atol=1e-4 * np.abs(table).max())


def test_rank_deficient_table_keeps_orthonormal_columns():
    # Rank 5 table, rank 8 requested: three zero singular values.
    rng = np.random.default_rng(4)
    table = rng.standard_normal((1500, 5)) @ rng.standard_normal((5, 30))
    for method in ("auto", "qr", "numpy"):
        u, s, vt = truncated_svd(table, 8, method=method)
        assert np.all(np.isfinite(u)) and np.all(np.isfinite(vt))
        assert np.all(s[5:] < 1e-10 * s[0])
        assert _orthonormality_error(u) < 1e-5, method
    # Pure Gram cannot define U for zero singular values: zeros, never NaN.
    u, s, _ = truncated_svd(table, 8, method="gram")
    assert np.all(np.isfinite(u))


def test_all_zero_table():
    u, s, vt = truncated_svd(np.zeros((100, 10), np.float32), 3)
    np.testing.assert_array_equal(s, 0.0)
    assert np.all(np.isfinite(u)) and _orthonormality_error(u) < 1e-5


def test_ill_conditioned_table_falls_back_to_qr():
    # Singular values from 1 down to 1e-9: Gram squares the condition number
    # (1e18 > 1/eps64) so its small singular values are pure rounding noise.
    s_true = np.logspace(0, -9, 20)
    table = _with_spectrum(s_true, rows=4000)
    gram = truncated_svd(table, 20, method="gram")
    auto = truncated_svd(table, 20, method="auto")
    _, _, used = svd_lib._truncated_svd(table, 20, method="auto")
    assert used == "qr"
    gram_error = np.max(np.abs(gram.s - s_true) / s_true)
    auto_error = np.max(np.abs(auto.s - s_true) / s_true)
    assert gram_error > 1e-2  # Gram is visibly wrong...
    assert auto_error < 1e-6  # ...the fallback is accurate.
    assert _orthonormality_error(auto.u) < 1e-5
    assert _orthonormality_error(gram.u) > 1e-2


def test_well_conditioned_rank_uses_gram():
    # Same spectrum, but the kept rank stays above the Gram tolerance.
    table = _with_spectrum(np.logspace(0, -9, 20), rows=4000)
    _, _, used = svd_lib._truncated_svd(table, 5, method="auto")
    assert used == "gram"


@pytest.mark.parametrize(
    "dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.float64]
)
def test_low_precision_inputs(dtype):
    table = _table(rows=2000, cols=30, seed=5).astype(dtype)
    reference = np.asarray(table, dtype=np.float64)  # the values actually stored
    ref_s = np.linalg.svd(reference, compute_uv=False)
    u, s, vt = truncated_svd(table, 8)
    np.testing.assert_allclose(s, ref_s[:8], rtol=1e-8)
    error = np.sum((reference - (u * s) @ vt.astype(np.float64)) ** 2)
    np.testing.assert_allclose(error, np.sum(ref_s[8:] ** 2), rtol=1e-4)


@pytest.mark.parametrize("method", EXACT_METHODS + ["randomized"])
def test_wide_table(method):
    table = _table(rows=40, cols=500, seed=6)
    ref_s = np.linalg.svd(table.astype(np.float64), compute_uv=False)
    u, s, vt = truncated_svd(table, 7, method=method)
    assert u.shape == (40, 7) and vt.shape == (7, 500)
    rtol = 1e-2 if method == "randomized" else 1e-8
    np.testing.assert_allclose(s, ref_s[:7], rtol=rtol)
    assert _orthonormality_error(vt.T) < 1e-5


def test_default_rank_is_full():
    u, s, vt = truncated_svd(_table(rows=200, cols=20))
    assert s.shape == (20,)


def test_singular_values_match_numpy():
    table = _table(seed=7)
    ref_s = np.linalg.svd(table.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(singular_values(table), ref_s, rtol=1e-8)
    np.testing.assert_allclose(singular_values(table.T), ref_s, rtol=1e-8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0}, "rank=0"),
        ({"rank": 41}, "rank=41"),
        ({"rank": 2.5}, "rank=2.5"),
        ({"rank": True}, "rank=True"),
        ({"rank": 3, "method": "lanczos"}, "method='lanczos'"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        truncated_svd(_table(rows=100), **kwargs)


def test_invalid_tables():
    with pytest.raises(ValueError, match="2-D"):
        truncated_svd(np.zeros(10), 1)
    with pytest.raises(ValueError, match="non-empty"):
        truncated_svd(np.zeros((0, 10)), 1)
    with pytest.raises(ValueError, match="dtype"):
        truncated_svd(np.zeros((10, 3), dtype=complex), 1)


_MEMORY_PROBE = """
import json, tracemalloc
import numpy as np
from keras_lowrank.decomposition import svd as svd_lib
rows, cols, rank = 200_000, 300, 30
rng = np.random.default_rng(8)
table = np.empty((rows, cols), dtype=np.float32)
for start in range(0, rows, 50_000):
    table[start : start + 50_000] = rng.random((50_000, cols), dtype=np.float32)
tracemalloc.start()
u, s, vt = svd_lib.truncated_svd(table, rank)
_, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"peak": peak, "block": svd_lib._BLOCK_BYTES, "u": list(u.shape)}))
"""


def test_memory_stays_far_below_a_float64_copy():
    # A fresh process: tracemalloc counts every thread's allocations, and
    # background threads left by other tests (tf.data, Keras) would be
    # counted as the SVD's.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE], capture_output=True, text=True,
        env=env, timeout=300, check=True,
    )
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    rows, cols, rank = 200_000, 300, 30
    float64_copy = rows * cols * 8  # 458 MiB; a V x V matrix would be 298 GiB
    output = rows * rank * 4
    # Output (23 MiB) plus a few float64 row blocks (32 MiB each).
    assert probe["peak"] < output + 4 * probe["block"]
    assert probe["peak"] < 0.25 * float64_copy
    assert probe["u"] == [rows, rank]
