"""Seeded stratified splits."""

import numpy as np
import pytest

from keras_lowrank.data.splits import stratified_split

pytestmark = pytest.mark.backend_agnostic


def test_partition_and_proportions():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    rest, dev, test = stratified_split(labels, [0.1, 0.2], seed=3)
    every = np.concatenate([rest, dev, test])
    assert sorted(every.tolist()) == list(range(100))
    np.testing.assert_array_equal(np.bincount(labels[dev]), [5, 3, 2])
    np.testing.assert_array_equal(np.bincount(labels[test]), [10, 6, 4])


def test_deterministic_and_seeded():
    labels = np.arange(200) % 4
    a = stratified_split(labels, [0.25], seed=0)
    b = stratified_split(labels, [0.25], seed=0)
    c = stratified_split(labels, [0.25], seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        stratified_split([0, 1], [1.2])
    with pytest.raises(ValueError, match="sum"):
        stratified_split([0, 1], [0.6, 0.5])
