"""Rank choice: compression ratio, energy share, and the errors for bad input."""

import math

import numpy as np
import pytest

from keras_lowrank.decomposition import energy_kept
from keras_lowrank.decomposition import max_useful_rank
from keras_lowrank.decomposition import rank_for_compression
from keras_lowrank.decomposition import rank_for_energy
from keras_lowrank.decomposition import resolve_rank

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize(
    "vocab, dim, compression",
    [
        (10000, 300, 0.9),
        (400000, 300, 0.9),
        (5000, 64, 0.5),
        (200, 200, 0.9),
        (50, 8, 0.99),
    ],
)
def test_rank_for_compression_formula(vocab, dim, compression):
    rank = rank_for_compression(vocab, dim, compression)
    exact = round((1 - compression) * vocab * dim / (vocab + dim), 9)
    expected = max(1, math.floor(exact))
    assert rank == expected
    # The factors hold at most (1 - compression) of the parameters (or rank 1).
    budget = (1 - compression) * vocab * dim + 1e-9
    assert rank == 1 or rank * (vocab + dim) <= budget
    assert rank * (vocab + dim) < vocab * dim


def test_rank_for_compression_is_exact_at_integers():
    # (1 - 0.9) * 200 * 200 / 400 is exactly 10; float rounding would give 9.
    assert rank_for_compression(200, 200, 0.9) == 10


def test_max_useful_rank():
    for vocab, dim in [(10000, 300), (7, 3), (300, 300), (2, 2)]:
        limit = max_useful_rank(vocab, dim)
        assert limit * (vocab + dim) < vocab * dim
        assert (limit + 1) * (vocab + dim) >= vocab * dim
    assert max_useful_rank(1, 5) == 0


def test_rank_for_energy_meets_threshold_and_is_minimal():
    s = np.random.default_rng(0).random(50) * np.logspace(0, -2, 50)
    total = np.sum(s**2)
    ordered = np.sort(s)[::-1]
    for energy in [0.1, 0.5, 0.9, 0.99, 1.0]:
        rank = rank_for_energy(s, energy)
        assert np.sum(ordered[:rank] ** 2) / total >= energy - 1e-12
        if rank > 1:
            assert np.sum(ordered[: rank - 1] ** 2) / total < energy
    assert rank_for_energy([3.0, 2.0, 1.0], 0.9) == 2
    assert rank_for_energy([1.0, 0.0, 0.0], 1.0) == 1


def test_energy_kept():
    s = [3.0, 2.0, 1.0]
    assert energy_kept(s, 1) == pytest.approx(9 / 14)
    assert energy_kept(s, 3) == 1.0
    assert energy_kept(s, 10) == 1.0
    assert energy_kept([0.0, 0.0], 1) == 1.0


def test_resolve_rank_each_way():
    s = np.linspace(10, 1, 30)
    assert resolve_rank(1000, 30, rank=5) == 5
    by_ratio = rank_for_compression(1000, 30, 0.5)
    assert resolve_rank(1000, 30, compression=0.5) == by_ratio
    by_energy = rank_for_energy(s, 0.8)
    assert resolve_rank(1000, 30, energy=0.8, singular_values=s) == by_energy


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0}, "rank=0"),
        ({"rank": -3}, "rank=-3"),
        ({"rank": 2.0}, "rank=2.0"),
        ({"rank": "4"}, "rank='4'"),
        ({"rank": 30}, "rank=30"),  # 30 * (1000 + 30) >= 1000 * 30: saves nothing
        ({"compression": 0.0}, "compression=0.0"),
        ({"compression": 1.0}, "compression=1.0"),
        ({"compression": -0.5}, "compression=-0.5"),
        ({"energy": 0.0, "singular_values": [1.0]}, "energy=0.0"),
        ({"energy": 1.5, "singular_values": [1.0]}, "energy=1.5"),
        ({"energy": 0.9}, "singular_values"),
        ({}, "exactly one"),
        ({"rank": 3, "compression": 0.5}, "rank=3, compression=0.5"),
        ({"rank": 3, "energy": 0.5}, "exactly one"),
    ],
)
def test_resolve_rank_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resolve_rank(1000, 30, **kwargs)


def test_energy_that_saves_nothing_is_an_error():
    flat = np.ones(30)  # every direction matters equally
    with pytest.raises(ValueError, match="energy=1.0"):
        resolve_rank(1000, 30, energy=1.0, singular_values=flat)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rank_for_compression(0, 10, 0.5), "input_dim=0"),
        (lambda: rank_for_compression(10, -1, 0.5), "output_dim=-1"),
        (lambda: rank_for_compression(10, 10, 1.2), "compression=1.2"),
        (lambda: rank_for_compression(1, 5, 0.5), "too small"),
        (lambda: rank_for_energy([1.0], 0), "energy=0"),
        (lambda: rank_for_energy([], 0.5), "non-empty"),
        (lambda: rank_for_energy([1.0, -1.0], 0.5), "non-negative"),
        (lambda: rank_for_energy([0.0, 0.0], 0.5), "all-zero"),
        (lambda: energy_kept([1.0], 0), "rank=0"),
        (lambda: max_useful_rank(2.5, 3), "input_dim=2.5"),
    ],
)
def test_argument_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
