"""Seeded, stratified splits of labelled examples.

Used wherever a dataset lacks a dev (or test) split: the split is a pure
function of the labels, the fractions and the seed, so the same call gives the
same indices on every machine. This module only computes indices; it must not
read files or touch TensorFlow.
"""

import numpy as np


def _count_for(n, fraction):
    # Round half up (not Python's half-to-even) so the rule is easy to state.
    return int(np.floor(n * fraction + 0.5))


def stratified_split(labels, fractions, *, seed=0):
    """Splits example indices into parts that keep the class proportions.

    For every class (in sorted label order) the indices of its examples are
    shuffled with `numpy.random.default_rng(seed)`; the first
    `round(fraction * n_class)` go to the first requested part, the next ones to
    the second part, and the rest stay in the remainder. Every part is returned
    in the original example order, so the result is deterministic and does not
    depend on the order classes appear in.

    Example:

    >>> rest, dev = stratified_split([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], [0.5])
    >>> len(rest), len(dev)
    (5, 5)

    Args:
        labels: 1-D sequence of class labels (any sortable values).
        fractions: sequence of fractions in (0, 1), one per carved part; their
            sum must be below 1.
        seed: integer seed of the shuffle.

    Returns:
        A list of `len(fractions) + 1` int64 index arrays: the remainder first,
        then one array per fraction.
    """
    fractions = list(fractions)
    for fraction in fractions:
        if not 0.0 < float(fraction) < 1.0:
            raise ValueError(
                "Expected every entry of `fractions` to be in (0, 1), "
                f"received: fractions={fractions}"
            )
    if sum(fractions) >= 1.0:
        raise ValueError(
            f"Expected `fractions` to sum to less than 1, received: fractions={fractions}"
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"Expected `seed` to be an integer, received: seed={seed!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(int(seed))
    parts = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        start = 0
        for i, fraction in enumerate(fractions):
            count = _count_for(len(members), fraction)
            parts[i + 1].append(members[start : start + count])
            start += count
        parts[0].append(members[start:])
    return [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts]
