"""The search of `compress()`: successive halving over fine-tuned recipes.

The planner's proxy orders recipes within a family but cannot compare
families (a pruned int4 table and a codebook table of equal bytes err in
ways no reconstruction error ranks), so families are compared by training:
every recipe starts a distilled fine-tune, all are scored on validation data
after a short fraction of the fine-tune, the better half continues for
`GROWTH` times as long, and so on (Jamieson and Talwalkar, 2016; Li et al.,
Hyperband, 2018) until the finalists have trained the full `epochs`. The
finalists' checkpoints of the last rung are averaged (`Trial.average_weights`),
put in their stored form (quantized, codes frozen) and scored again; the
best final score wins.

`rung_plan` is the schedule (pure arithmetic). `Trial` is one recipe's
fine-tune, carried on across rungs with its own optimizer and its best
weights (its start, before any fine-tune, is scored too).
`successive_halving` conducts. This module must not plan recipes, build
tables or count bytes.

References:
    - [Jamieson and Talwalkar, 2016. Non-stochastic Best Arm Identification
      and Hyperparameter Optimization](https://arxiv.org/abs/1502.07943)
    - [Li et al., 2018. Hyperband: A Novel Bandit-Based Approach to
      Hyperparameter Optimization](https://arxiv.org/abs/1603.06560)
    - [Izmailov et al., 2018. Averaging Weights Leads to Wider Optima and
      Better Generalization](https://arxiv.org/abs/1803.05407)
"""

import dataclasses
import math
import time

import keras
import numpy as np

from keras_lowrank.compression import data as data_lib

# The finalists: enough to let the stored form (int4, frozen codes) decide
# between two near-equal recipes, few enough to cost little.
FINALISTS = 2
# Each rung trains its recipes this many times longer than the one before
# (while halving them): most of the budget goes to the few recipes that
# earned it, and 12 recipes cost less than 4 full fine-tunes did, builds
# and per-model graph tracing included.
GROWTH = 3

DIVERGED = "the fine-tune diverged (try a lower `learning_rate`)"


@dataclasses.dataclass(frozen=True)
class Rung:
    """One rung of the search: how many recipes train, and until when.

    Args:
        trials: recipes trained in this rung.
        epochs: cumulative epochs each has trained at the rung's end.
    """

    trials: int
    epochs: float


def rung_plan(count, epochs, finalists=FINALISTS, growth=GROWTH):
    """The rungs of a successive-halving search.

    Halves the recipes from `count` until at most `finalists` remain; the
    last rung ends at `epochs`, each earlier one at `1 / growth` of its
    successor's epochs. With `count <= finalists` there is one rung of
    `epochs` epochs.

    Args:
        count: recipes in the first rung (>= 1).
        epochs: epochs the finalists train in all (> 0).
        finalists: recipes of the last rung.
        growth: how many times longer each rung trains than the one before.

    Returns:
        A list of `Rung`, first to last.

    Example:

    ```python
    rung_plan(12, 5)  # 12 recipes to 5/27 epochs, 6 to 5/9, 3 to 5/3, 2 to 5
    ```
    """
    counts = [int(count)]
    while counts[-1] > finalists:
        counts.append(max(finalists, counts[-1] // 2))
    last = len(counts) - 1
    return [Rung(n, epochs / growth ** (last - i)) for i, n in enumerate(counts)]


def piece_plan(rungs, steps_per_epoch):
    """The fine-tune pieces every trial runs, `[(epochs at its end, steps)]`.

    Each rung's stretch is cut at every whole epoch: a trial is scored at
    the end of each piece, and the default schedule restarts its cosine
    decay at the start of each, so every score is taken where the rate is
    at its floor, never halfway down a period.
    """
    pieces, epochs = [], 0.0
    for rung in rungs:
        while epochs < rung.epochs - 1e-9:
            part = min(1.0, rung.epochs - epochs)
            epochs += part
            pieces.append((epochs, max(1, int(round(part * steps_per_epoch)))))
    return pieces


class CosineRestartsAt(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay from `peak` to `floor`, restarted at the start of every piece.

    The search's default fine-tune schedule: piece `k` (of `lengths[k]`
    optimizer steps, from `piece_plan`) runs
    `floor + (peak - floor) * (1 + cos(pi * t / lengths[k])) / 2` over its
    steps `t`; past the last piece the rate stays at `floor`. Within a
    rung longer than an epoch this is one period per epoch, as Keras'
    `CosineDecayRestarts(t_mul=1)`.

    Args:
        peak: the rate at the start of each piece.
        floor: the rate it decays to.
        lengths: optimizer steps of each piece.
    """

    def __init__(self, peak, floor, lengths):
        self.peak, self.floor = float(peak), float(floor)
        self.lengths = [int(n) for n in lengths]

    def __call__(self, step):
        starts = keras.ops.convert_to_tensor(np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype("float32"))
        step = keras.ops.cast(step, "float32")
        index = keras.ops.sum(keras.ops.cast(keras.ops.greater_equal(step, starts), "int32")) - 1
        start = keras.ops.take(starts, index)
        length = keras.ops.take(keras.ops.convert_to_tensor(np.asarray(self.lengths, "float32")), index)
        progress = keras.ops.clip((step - start) / length, 0.0, 1.0)
        return self.floor + (self.peak - self.floor) * 0.5 * (1.0 + keras.ops.cos(np.pi * progress))

    def get_config(self):
        return {"peak": self.peak, "floor": self.floor, "lengths": list(self.lengths)}


def epoch_units(rungs):
    """Epochs trained in all by a plan (what its wall time grows with)."""
    total, before = 0.0, 0.0
    for rung in rungs:
        total += rung.trials * (rung.epochs - before)
        before = rung.epochs
    return total


class Trial:
    """One recipe's distilled fine-tune, continued from rung to rung.

    Args:
        student: the built student model (compiled with the loss and
            metrics that score it).
        teacher: the untouched input model.
        train_data, validation_data: as `compress()` takes them.
        monitor, mode: the validation quantity and its direction.
        opts: `compress()`'s checked options.
        learning_rate: the fine-tune's rate or schedule.
        pieces: from `piece_plan`: the pieces of fine-tune, each scored.
        average_after: checkpoints taken after this many epochs are
            averaged (`average_weights`): the last rung's, where only the
            finalists still train.
    """

    def __init__(self, student, teacher, train_data, validation_data, monitor, mode, opts, learning_rate,
                 pieces, average_after=0.0):
        from keras_lowrank.training import Distiller

        self.student = student
        self.train_data, self.validation_data = train_data, validation_data
        self._monitor, self._mode, self._opts = monitor, mode, opts
        self._pieces = list(pieces)
        self.epochs = 0.0
        # Its own wall time (build, fine-tune, scoring): trials interleave.
        self.seconds = 0.0
        self.best_score, self.best_epochs, self.best_weights = None, 0.0, None
        self.scores = []
        self._average_after = float(average_after)
        self._weight_sum, self.averaged = None, 0
        self.steps_trained = 0
        self._started = False
        # Epochs at which an evaluation found non-finite weights or scores.
        self.diverged_at = None
        self._distiller = Distiller(student, teacher, temperature=opts["temperature"], alpha=opts["alpha"])
        self._distiller.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=student.loss)
        # Built before the first `fit`: an optimizer that makes its variables
        # inside the traced train step makes TensorFlow trace that step twice.
        self._distiller.optimizer.build(self._distiller.trainable_variables)

    def train_until(self, epochs):
        """Trains on to `epochs` cumulative epochs (whole passes, then a part),
        scoring on validation data after each pass and at the end."""
        train_data = self.train_data
        start = time.perf_counter()
        try:
            self._train_until(train_data, epochs)
        finally:
            self.seconds += time.perf_counter() - start
        self.scores.append(self.best_score)

    def _train_until(self, train_data, epochs):
        if not self._started:
            # The built table before any fine-tune is a candidate too: on
            # little data a fine-tune can move shared parameters (codebooks,
            # a projection) away from rows it never sees, and the search
            # must never return something worse than its own start.
            self._started = True
            self._record()
        while self._pieces and self._pieces[0][0] <= epochs + 1e-9:
            end, steps = self._pieces.pop(0)
            arguments = data_lib.fit_arguments(train_data, self._opts["batch_size"], shuffle=True)
            # One pass of `steps` batches (a whole epoch, or its first part).
            self._distiller.fit(**arguments, epochs=1, steps_per_epoch=steps, verbose=0)
            self.epochs = end
            self._record()

    @property
    def steps(self):
        """Optimizer steps applied so far (kept when the trial is released)."""
        if self._distiller is None:
            return self.steps_trained
        return int(keras.ops.convert_to_numpy(self._distiller.optimizer.iterations))

    def restore_best(self):
        """Puts the best-scoring weights back; raises if none was finite."""
        if self.best_weights is None:
            raise RuntimeError(f"every evaluation ended with non-finite weights or validation {self._monitor}: "
                               f"{DIVERGED}")
        self.student.set_weights(self.best_weights)

    def average_weights(self):
        """The mean of the checkpoints taken after `average_after` epochs.

        Each checkpoint ends a cosine period at its floor rate, so their
        mean is stochastic weight averaging (Izmailov et al., 2018): one
        set of weights that sits nearer the middle of the region the
        fine-tune explores, and whose validation score is not the
        luckiest of many. Weights that are not floating point (packed
        codes, counters) come from the last checkpoint. `None` before any
        such checkpoint.
        """
        if not self.averaged:
            return None
        last = self.student.get_weights()
        return [
            (total / self.averaged).astype(np.asarray(w).dtype) if total is not None else np.array(w)
            for total, w in zip(self._weight_sum, last)
        ]

    def release(self):
        """Drops what the trial holds (eliminated: its memory goes back)."""
        self.steps_trained = self.steps
        self._distiller = None
        self.best_weights = None
        self._weight_sum = None

    def _record(self):
        score = score_model(self.student, self.validation_data, self._monitor, self._opts)
        if not math.isfinite(score) or not finite_weights(self.student):
            # A diverged evaluation is never the best, and training on from
            # non-finite weights cannot recover: the trial stops here and
            # keeps its best weights so far.
            self.diverged_at = self.epochs
            self._pieces = []
            return
        improved = self.best_score is None or better_score(score, self.best_score, self._mode)
        in_average = self.epochs > self._average_after + 1e-9
        # Copied out only when kept: a checkpoint that neither improves nor
        # is averaged costs no copy of the model.
        weights = self.student.get_weights() if improved or in_average else None
        if improved:
            self.best_score, self.best_epochs = score, self.epochs
            self.best_weights = [np.array(w) for w in weights]
        if in_average:
            if self._weight_sum is None:
                self._weight_sum = [None] * len(weights)
            self._weight_sum = [
                (np.asarray(w, np.float64) + (0.0 if total is None else total))
                if np.issubdtype(np.asarray(w).dtype, np.floating) else None
                for total, w in zip(self._weight_sum, weights)
            ]
            self.averaged += 1


def successive_halving(trials, rungs, mode, on_rung=None, on_stop=None):
    """Runs `rungs` over `trials` (`{key: Trial}`); returns the finalists' keys.

    A trial whose fine-tune raises is dropped with its error (`errors`).

    Args:
        trials: `{key: Trial}` in the order they were planned (ties keep
            the earlier one).
        rungs: from `rung_plan`.
        mode: `"max"` or `"min"`.
        on_rung: optional `(rung_index, key, trial)` callback after each
            trial's rung (progress lines).
        on_stop: optional `(key, trial)` callback for each trial the search
            stops, before it is released (its student and best weights are
            still there).

    Returns:
        `(finalists, errors)`: the keys still running after the last rung,
        and `{key: error message}` of the trials that failed.
    """
    alive = list(trials)
    errors = {}
    for index, rung in enumerate(rungs):
        alive = alive[: rung.trials] if index == 0 else alive
        for key in list(alive):
            try:
                trials[key].train_until(rung.epochs)
            except (ValueError, RuntimeError, TypeError) as error:  # one bad trial must not end the search
                errors[key] = first_line(error)
                trials[key].release()
                alive.remove(key)
                continue
            if on_rung is not None:
                on_rung(index, key, trials[key])
        if index + 1 < len(rungs):
            keep = rungs[index + 1].trials
            ranked = sorted(alive, key=lambda k: _sort_key(trials[k].best_score, mode))
            survivors = set(ranked[:keep])
            for key in alive:
                if key not in survivors:
                    if on_stop is not None:
                        on_stop(key, trials[key])
                    trials[key].release()
            alive = [key for key in alive if key in survivors]
    return alive, errors


def _sort_key(score, mode):
    if score is None:
        return math.inf
    return -score if mode == "max" else score


def better_score(score, best, mode):
    return score > best if mode == "max" else score < best


# Arrays are scored in batches of at least this many examples: losses and
# metrics are means over examples, the same for any batch size.
SCORE_BATCH_SIZE = 512


def score_model(model, data, monitor, opts):
    """`monitor` on `data` of a compiled model; NaN when any log is non-finite."""
    batch_size = max(opts["batch_size"], SCORE_BATCH_SIZE)
    logs = model.evaluate(**data_lib.fit_arguments(data, batch_size), verbose=0, return_dict=True)
    if monitor not in logs:
        raise ValueError(f"Expected `monitor` to be one of the validation logs {sorted(logs)}, received: monitor={monitor!r}")
    # Non-finite outputs can still score a finite accuracy; the loss tells.
    if not all(math.isfinite(float(value)) for value in logs.values()):
        return math.nan
    return float(logs[monitor])


def finite_weights(model):
    """Whether every floating-point weight of `model` is finite."""
    return all(
        np.all(np.isfinite(w)) for w in model.get_weights() if np.issubdtype(np.asarray(w).dtype, np.floating)
    )


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
