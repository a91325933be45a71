"""The successive-halving search of `compress()`, on scripted trials.

Scores are scripted per trial and rung, so which trials survive each rung is
known in advance and written out by hand.
"""

import pytest

from keras_lowrank.compression import search

pytestmark = pytest.mark.backend_agnostic


def test_rung_plan_halves_to_the_finalists_and_triples_the_epochs():
    rungs = search.rung_plan(12, 5)
    assert [(r.trials, r.epochs) for r in rungs] == [(12, 5 / 27), (6, 5 / 9), (3, 5 / 3), (2, 5.0)]
    # 12 x 5/27 + 6 x (5/9 - 5/27) + 3 x (5/3 - 5/9) + 2 x (5 - 5/3).
    assert search.epoch_units(rungs) == pytest.approx(20 / 9 + 20 / 9 + 10 / 3 + 20 / 3)
    assert [(r.trials, r.epochs) for r in search.rung_plan(2, 3)] == [(2, 3)]
    assert [(r.trials, r.epochs) for r in search.rung_plan(1, 1)] == [(1, 1)]
    assert [(r.trials, r.epochs) for r in search.rung_plan(5, 4, growth=2)] == [(5, 2.0), (2, 4.0)]


class _Scripted:
    def __init__(self, scores, fail_at=None):
        self._scores, self._fail_at = list(scores), fail_at
        self.best_score, self.epochs, self.scores, self.trained_to, self.released = None, 0.0, [], [], False

    def train_until(self, epochs):
        if self._fail_at == len(self.trained_to):
            raise RuntimeError("diverged\nsecond line")
        self.trained_to.append(epochs)
        self.epochs = epochs
        score = self._scores[len(self.trained_to) - 1]
        self.best_score = score if self.best_score is None else max(self.best_score, score)
        self.scores.append(self.best_score)

    def release(self):
        self.released = True


def test_the_better_half_goes_on_and_the_rest_is_released():
    trials = {
        "a": _Scripted([0.5, 0.9, 0.9]),
        "b": _Scripted([0.8, 0.6, 0.6]),
        "c": _Scripted([0.7, 0.7, 0.95]),
        "d": _Scripted([0.6]),
        "e": _Scripted([0.9, 0.95, 0.8]),
    }
    rungs = [search.Rung(5, 1.0), search.Rung(3, 2.0), search.Rung(2, 4.0)]
    seen = []
    finalists, errors = search.successive_halving(trials, rungs, "max", on_rung=lambda i, k, t: seen.append((i, k)))
    # Rung 1: e 0.9, b 0.8, c 0.7 go on. Rung 2 (best so far): e 0.95, b 0.8, c 0.7 -> e, b.
    assert finalists == ["b", "e"] and errors == {}
    assert trials["e"].trained_to == [1.0, 2.0, 4.0] and trials["c"].trained_to == [1.0, 2.0]
    assert trials["a"].trained_to == [1.0] and trials["a"].released and trials["d"].released
    assert trials["c"].released and not trials["e"].released
    assert seen[:5] == [(0, k) for k in "abcde"]


def test_min_mode_keeps_the_lowest_and_a_failing_trial_is_dropped_with_its_reason():
    trials = {"a": _Scripted([3.0, 1.0]), "b": _Scripted([1.0], fail_at=1), "c": _Scripted([2.0, 2.5])}
    rungs = [search.Rung(3, 1.0), search.Rung(2, 2.0)]
    finalists, errors = search.successive_halving(trials, rungs, "min")
    assert errors == {"b": "diverged"}
    assert finalists == ["c"] and trials["a"].released


def test_pieces_cut_each_rung_at_whole_epochs():
    rungs = [search.Rung(12, 0.25), search.Rung(6, 0.5), search.Rung(2, 2.5)]
    pieces = search.piece_plan(rungs, steps_per_epoch=40)
    assert pieces == [(0.25, 10), (0.5, 10), (1.5, 40), (2.5, 40)]


def test_the_default_schedule_restarts_its_cosine_at_every_piece():
    import keras
    import numpy as np

    schedule = search.CosineRestartsAt(1e-2, 1e-4, [4, 8])
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(14)]
    expected = [1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + np.cos(np.pi * t / n)) for n in (4, 8) for t in range(n)]
    np.testing.assert_allclose(rates[:12], expected, rtol=1e-5)
    np.testing.assert_allclose(rates[12:], [1e-4, 1e-4], rtol=1e-5)  # past the last piece: the floor
    assert rates[0] == pytest.approx(1e-2) and rates[4] == pytest.approx(1e-2)


def _tiny_trial(average_after):
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(20, 3),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(loss=loss, metrics=["accuracy"])
    rng = np.random.default_rng(0)
    data = (rng.integers(0, 20, (64, 4)).astype("int32"), rng.integers(0, 2, 64))
    opts = {"batch_size": 16, "temperature": 2.0, "alpha": 0.5}
    pieces = [(0.5, 2), (1.0, 2), (2.0, 4)]
    teacher = keras.models.clone_model(model)
    teacher.set_weights(model.get_weights())
    return search.Trial(model, teacher, data, data, "accuracy", "max", opts, 1e-1, pieces,
                        average_after=average_after)


def test_average_weights_is_the_mean_of_the_checkpoints_after_average_after():
    import numpy as np

    trial = _tiny_trial(average_after=0.5)
    trial.train_until(0.5)
    assert trial.average_weights() is None  # no checkpoint after 0.5 epochs yet
    trial.train_until(1.0)
    at_one = [np.array(w) for w in trial.student.get_weights()]
    trial.train_until(2.0)
    at_two = [np.array(w) for w in trial.student.get_weights()]
    assert trial.averaged == 2
    average = trial.average_weights()
    for got, a, b in zip(average, at_one, at_two):
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-6, atol=1e-7)
        assert got.dtype == a.dtype
    assert not all(np.array_equal(a, b) for a, b in zip(at_one, at_two))  # the fine-tune moved them
