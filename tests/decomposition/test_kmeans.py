"""k-means and product quantization against brute-force numpy references.

References: nearest codewords by explicit distance loops, weighted means of
each cluster's members, the optimum over every partition of a tiny set, and
the reconstruction error summed row by row.
"""

import itertools

import numpy as np
import pytest

from keras_lowrank.decomposition import kmeans

pytestmark = pytest.mark.backend_agnostic


def brute_force_codes(table, codebooks):
    groups, codes, sub_dim = codebooks.shape
    out = np.empty((len(table), groups), np.int64)
    for i, row in enumerate(np.asarray(table, np.float64)):
        for g in range(groups):
            piece = row[g * sub_dim : (g + 1) * sub_dim]
            distances = [np.sum((piece - codebooks[g, k]) ** 2) for k in range(codes)]
            out[i, g] = int(np.argmin(distances))
    return out


def _decode(codebooks, codes):
    return np.concatenate([codebooks[g, codes[:, g]] for g in range(codebooks.shape[0])], axis=1)


def test_assign_codes_matches_brute_force():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(40, 6))
    codebooks = rng.normal(size=(3, 5, 2))
    np.testing.assert_array_equal(kmeans.assign_codes(table, codebooks), brute_force_codes(table, codebooks))


def test_result_is_a_lloyd_fixed_point():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(60, 4))
    weights = rng.integers(1, 5, size=60).astype(float)
    result = kmeans.product_quantize(table, 2, 4, row_weights=weights, iterations=200, seed=3)
    codes = result.codes
    # Every code is the nearest codeword of the returned codebooks.
    np.testing.assert_array_equal(codes, brute_force_codes(table, result.codebooks))
    # Every used codeword is the weighted mean of its members.
    for g in range(2):
        piece = table[:, 2 * g : 2 * g + 2]
        for k in range(4):
            members = codes[:, g] == k
            if members.any():
                mean = np.average(piece[members], axis=0, weights=weights[members])
                np.testing.assert_allclose(result.codebooks[g, k], mean, rtol=1e-5, atol=1e-6)


def test_squared_error_is_the_reconstruction_error():
    rng = np.random.default_rng(2)
    table = rng.normal(size=(30, 6)).astype("float32")
    result = kmeans.product_quantize(table, 3, 4, seed=0)
    expected = np.sum((table.astype(np.float64) - _decode(result.codebooks, result.codes)) ** 2)
    np.testing.assert_allclose(result.squared_error, expected, rtol=1e-6)


def test_kmeans_reaches_the_optimal_partition_of_a_tiny_set():
    points = np.array([[0.0], [0.1], [0.3], [10.0], [10.1], [10.4], [5.5]])
    best = np.inf
    for labels in itertools.product(range(2), repeat=len(points)):
        labels = np.array(labels)
        if len(set(labels)) < 2:
            continue
        cost = sum(np.sum((points[labels == k] - points[labels == k].mean()) ** 2) for k in range(2))
        best = min(best, cost)
    result = kmeans.kmeans(points, 2, seed=0)
    np.testing.assert_allclose(result.inertia, best, rtol=1e-6)


def test_weighted_inertia_and_pull_of_heavy_rows():
    points = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    weights = np.array([1.0, 1.0, 100.0, 1.0, 1.0])
    result = kmeans.kmeans(points, 2, row_weights=weights, seed=0)
    expected = np.sum(weights * np.sum((points - result.centroids[result.labels]) ** 2, axis=1))
    np.testing.assert_allclose(result.inertia, expected, rtol=1e-6)
    centroid = result.centroids[result.labels[2], 0]
    np.testing.assert_allclose(centroid, (0 + 1 + 200) / 102, rtol=1e-5)


def test_seeding_draws_rows_and_results_are_deterministic():
    rng = np.random.default_rng(4)
    table = rng.normal(size=(50, 4)).astype("float32")
    seeded = kmeans.product_quantize(table, 2, 5, iterations=0, seed=7)
    for g in range(2):
        piece = table[:, 2 * g : 2 * g + 2]
        for codeword in seeded.codebooks[g]:
            assert np.any(np.all(piece == codeword, axis=1))
    again = kmeans.product_quantize(table, 2, 5, seed=7)
    once = kmeans.product_quantize(table, 2, 5, seed=7)
    np.testing.assert_array_equal(again.codebooks, once.codebooks)
    np.testing.assert_array_equal(again.codes, once.codes)


def test_fewer_distinct_rows_than_codes():
    table = np.repeat(np.array([[1.0, 2.0], [3.0, -1.0]]), 5, axis=0)
    result = kmeans.product_quantize(table, 1, 4, seed=0)
    assert result.squared_error == 0.0
    np.testing.assert_array_equal(_decode(result.codebooks, result.codes), table)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"groups": 3}, "groups"),
        ({"groups": 0}, "groups"),
        ({"codes": 1}, "codes"),
        ({"codes": 2.5}, "codes"),
        ({"iterations": -1}, "iterations"),
        ({"seed": -2}, "seed"),
        ({"row_weights": np.ones(3)}, "row_weights"),
        ({"row_weights": -np.ones(8)}, "row_weights"),
    ],
)
def test_argument_errors(kwargs, message):
    arguments = {"groups": 2, "codes": 4, **kwargs}
    table = np.ones((8, 4))
    with pytest.raises(ValueError, match=message):
        kmeans.product_quantize(
            table, arguments.pop("groups"), arguments.pop("codes"), **arguments
        )


def test_errors_name_the_arguments_of_kmeans():
    with pytest.raises(ValueError, match="k=1"):
        kmeans.kmeans(np.ones((4, 2)), 1)
    with pytest.raises(ValueError, match="points"):
        kmeans.kmeans(np.ones(4), 2)
    with pytest.raises(ValueError, match="codebooks"):
        kmeans.assign_codes(np.ones((4, 6)), np.ones((2, 3, 2)))
