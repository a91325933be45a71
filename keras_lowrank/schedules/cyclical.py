"""Triangular cyclical learning-rate schedules: CLR and cyclically annealed CLR.

This module holds the two learning-rate schedules used to fine-tune a model
after its embedding has been factorized: the triangular cyclical learning rate
of Smith (2017) and the cyclically annealed learning rate (CALR) of Acharya et
al. (2019), whose peak shrinks geometrically from one cycle to the next. Both
are `keras.optimizers.schedules.LearningRateSchedule` objects: graph-safe,
serializable with the optimizer in a `.keras` file.

It must not depend on any other part of `keras_lowrank` and must not touch
models or optimizers: a schedule is a pure function of the step count.
"""

import math
import numbers

import keras
import numpy as np
from keras import ops

# Smith's "triangular2" policy halves the amplitude every cycle; it is the
# published annealed variant of the triangular schedule and, over the few
# cycles of a post-factorization fine-tune (typically 2 to 6), it brings the
# peak close to the floor by the last cycle (0.5**4 = 1/16) without
# collapsing the second and third cycles the way a smaller factor would.
DEFAULT_DECAY = 0.5


@keras.saving.register_keras_serializable(package="keras_lowrank")
class CyclicallyAnnealedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Triangular cyclical learning rate whose peak decays every cycle (CALR).

    The learning rate climbs linearly from `initial_learning_rate` to a peak
    in `step_size` steps, falls back to `initial_learning_rate` in another
    `step_size` steps, and repeats. The height of the peak above the floor is
    multiplied by `decay` at every new cycle, so the schedule explores with
    large steps early and anneals toward the floor later, which is what a
    fine-tune after low-rank factorization needs (Acharya et al., 2019).

    With the cycle index :math:`k` and the position :math:`x` in the cycle,

    .. math::

        k = \\left\\lfloor \\frac{t}{2 s} \\right\\rfloor, \\qquad
        x = \\left| \\frac{t}{s} - 2k - 1 \\right|,

    .. math::

        \\eta_t = \\eta_{\\min} + (\\eta_{\\max} - \\eta_{\\min})
                  \\, \\gamma^{j} \\, \\max(0, 1 - x),

    where :math:`t` is the optimizer step, :math:`s` is `step_size`,
    :math:`\\eta_{\\min}`, :math:`\\eta_{\\max}` are `initial_learning_rate`
    and `maximal_learning_rate`, :math:`\\gamma` is `decay`, and :math:`j = k`,
    or :math:`j = k \\bmod R` when `restart_every=R` restarts the annealing
    every :math:`R` cycles (the peak goes back to `maximal_learning_rate`).
    The schedule starts at the floor (step 0) and first reaches
    `maximal_learning_rate` at step `step_size`. `decay=1` gives the plain
    triangular schedule, `keras_lowrank.CyclicalLearningRate`.

    The schedule is a 1-argument callable of the optimizer step built from
    `keras.ops`, so it runs inside `model.fit` and `tf.function`. It is
    registered as a serializable object and is saved and restored with the
    optimizer in a `.keras` file. `evaluate(steps)` gives the same values as a
    NumPy array without building any tensors (for plots and reports).

    Example:

    ```python
    import keras
    import keras_lowrank

    schedule = keras_lowrank.CyclicallyAnnealedLearningRate(
        initial_learning_rate=1e-4,
        maximal_learning_rate=1e-2,
        step_size=100,
        decay=0.5,
    )
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    print(round(float(schedule(100)), 6), round(float(schedule(300)), 6))
    # 0.01 0.00505
    ```

    Args:
        initial_learning_rate: Python float >= 0. The floor of the schedule
            and its value at step 0.
        maximal_learning_rate: Python float >= `initial_learning_rate`. The
            peak of the first cycle.
        step_size: Positive number of steps in half a cycle (Smith suggests
            2 to 10 epochs' worth of steps; a fine-tune uses fewer).
        decay: Float in (0, 1]. Factor applied to the height of the peak at
            each new cycle. Defaults to 0.5 (Smith's "triangular2" policy).
        restart_every: `None` or a positive integer R. When set, the
            annealing restarts every R cycles (the exponent is k mod R).
            Defaults to `None` (no restarts).
        name: Optional name for the operations of the schedule.

    Returns:
        A 1-argument callable that maps the optimizer step to the learning
        rate, a float32 scalar tensor (or a tensor of the step's shape).

    References:
        - [Smith, 2017. Cyclical Learning Rates for Training Neural
          Networks](https://arxiv.org/abs/1506.01186)
        - [Acharya et al., 2019. Online Embedding Compression for Text
          Classification using Low Rank Matrix Factorization](
          https://arxiv.org/abs/1811.00641)
    """

    def __init__(
        self,
        initial_learning_rate,
        maximal_learning_rate,
        step_size,
        decay=DEFAULT_DECAY,
        restart_every=None,
        name=None,
    ):
        super().__init__()
        _check_rate("initial_learning_rate", initial_learning_rate)
        _check_rate("maximal_learning_rate", maximal_learning_rate)
        if maximal_learning_rate < initial_learning_rate:
            raise ValueError(
                "Expected `maximal_learning_rate` to be >= "
                "`initial_learning_rate`, received: "
                f"maximal_learning_rate={maximal_learning_rate}, "
                f"initial_learning_rate={initial_learning_rate}"
            )
        if not _is_real(step_size) or not step_size > 0 or not math.isfinite(step_size):
            raise ValueError(
                "Expected `step_size` to be a positive number of steps, "
                f"received: step_size={step_size!r}"
            )
        if not _is_real(decay) or not 0.0 < decay <= 1.0:
            raise ValueError(
                "Expected `decay` to be a float in (0, 1], "
                f"received: decay={decay!r}"
            )
        if restart_every is not None and (
            isinstance(restart_every, bool)
            or not isinstance(restart_every, numbers.Integral)
            or restart_every < 1
        ):
            raise ValueError(
                "Expected `restart_every` to be None or a positive integer, "
                f"received: restart_every={restart_every!r}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.maximal_learning_rate = float(maximal_learning_rate)
        # Plain Python numbers keep the config JSON-serializable when a
        # NumPy scalar is passed in.
        self.step_size = (
            int(step_size)
            if isinstance(step_size, numbers.Integral)
            else float(step_size)
        )
        self.decay = float(decay)
        self.restart_every = None if restart_every is None else int(restart_every)
        self.name = name

    def __call__(self, step):
        with keras.name_scope(self.name or type(self).__name__):
            step = _as_step_tensor(step)
            integral = "int" in keras.backend.standardize_dtype(step.dtype)
            if integral and isinstance(self.step_size, int):
                # Cycle index and position in integer arithmetic: exact at
                # any step count. float32 steps lose the position within the
                # cycle beyond 2**24 steps (CLR at step 1e9 + 50 came out
                # 0.00644 instead of 0.00505).
                step = ops.cast(step, "int64")
                period = ops.convert_to_tensor(2 * self.step_size, "int64")
                cycle = ops.floor_divide(step, period)
                position = ops.cast(step - cycle * period, "float64")
            else:
                # A fractional step or step size: float64, exact for integer
                # steps below 2**53 (where the backend computes in float64).
                step = ops.cast(step, "float64")
                period = ops.convert_to_tensor(2.0 * self.step_size, "float64")
                position = ops.mod(step, period)
                cycle = ops.round((step - position) / period)
            x = ops.abs(position / float(self.step_size) - 1.0)
            if self.restart_every is not None:
                cycle = ops.mod(cycle, ops.cast(self.restart_every, cycle.dtype))
            height = (self.maximal_learning_rate - self.initial_learning_rate) * ops.power(
                ops.convert_to_tensor(self.decay, "float64"), ops.cast(cycle, "float64")
            )
            rate = self.initial_learning_rate + height * ops.maximum(0.0, 1.0 - x)
            return ops.cast(rate, "float32")

    def evaluate(self, steps):
        """Returns the learning rate at `steps` as a NumPy float64 array.

        The same formula as `__call__`, evaluated in NumPy without building
        tensors: cheap for plots and reports.

        Args:
            steps: An integer or an array-like of step counts.

        Returns:
            A float64 array of the shape of `steps`.
        """
        return _triangular_numpy(
            steps,
            self.initial_learning_rate,
            self.maximal_learning_rate,
            self.step_size,
            self.decay,
            self.restart_every,
        )

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "maximal_learning_rate": self.maximal_learning_rate,
            "step_size": self.step_size,
            "decay": self.decay,
            "restart_every": self.restart_every,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="keras_lowrank")
class CyclicalLearningRate(CyclicallyAnnealedLearningRate):
    """Triangular cyclical learning rate (CLR, Smith 2017).

    The learning rate climbs linearly from `initial_learning_rate` to
    `maximal_learning_rate` in `step_size` steps, falls back in another
    `step_size` steps, and repeats with the same peak forever:

    .. math::

        k = \\left\\lfloor \\frac{t}{2 s} \\right\\rfloor, \\qquad
        x = \\left| \\frac{t}{s} - 2k - 1 \\right|, \\qquad
        \\eta_t = \\eta_{\\min} + (\\eta_{\\max} - \\eta_{\\min})
                  \\max(0, 1 - x).

    It is `keras_lowrank.CyclicallyAnnealedLearningRate` with `decay=1`; its
    values are identical to that schedule's, and it serializes without the
    `decay` and `restart_every` arguments.

    Example:

    ```python
    import keras
    import keras_lowrank

    schedule = keras_lowrank.CyclicalLearningRate(
        initial_learning_rate=1e-4, maximal_learning_rate=1e-2, step_size=100
    )
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    print(round(float(schedule(50)), 6), round(float(schedule(300)), 6))
    # 0.00505 0.01
    ```

    Args:
        initial_learning_rate: Python float >= 0. The floor of the schedule
            and its value at step 0.
        maximal_learning_rate: Python float >= `initial_learning_rate`. The
            peak of every cycle.
        step_size: Positive number of steps in half a cycle.
        name: Optional name for the operations of the schedule.

    Returns:
        A 1-argument callable that maps the optimizer step to the learning
        rate, a float32 scalar tensor.

    References:
        - [Smith, 2017. Cyclical Learning Rates for Training Neural
          Networks](https://arxiv.org/abs/1506.01186)
        - [Acharya et al., 2019. Online Embedding Compression for Text
          Classification using Low Rank Matrix Factorization](
          https://arxiv.org/abs/1811.00641)
    """

    def __init__(
        self, initial_learning_rate, maximal_learning_rate, step_size, name=None
    ):
        super().__init__(
            initial_learning_rate,
            maximal_learning_rate,
            step_size,
            decay=1.0,
            restart_every=None,
            name=name,
        )

    def get_config(self):
        config = super().get_config()
        del config["decay"], config["restart_every"]
        return config


def _as_step_tensor(step):
    # A Python or NumPy integer stays an integer (int64, so steps beyond
    # 2**31 fit); a tensor or float keeps its dtype.
    if isinstance(step, numbers.Integral) and not isinstance(step, bool):
        return ops.convert_to_tensor(int(step), "int64")
    if isinstance(step, (float, np.floating)):
        return ops.convert_to_tensor(float(step), "float64")
    return ops.convert_to_tensor(step)


def _triangular_numpy(steps, initial, maximal, step_size, decay, restart_every):
    """The CALR formula in NumPy (float64); CLR is the case decay=1."""
    steps = np.asarray(steps)
    if np.issubdtype(steps.dtype, np.integer) and isinstance(step_size, int):
        # Integer arithmetic for the cycle and the position in it, as in
        # `__call__`: exact at any step count.
        t = steps.astype(np.int64)
        cycle = np.floor_divide(t, 2 * step_size)
        position = (t - cycle * 2 * step_size).astype(np.float64)
        x = np.abs(position / step_size - 1.0)
        cycle = cycle.astype(np.float64)
    else:
        t = steps.astype(np.float64)
        cycle = np.floor(t / (2.0 * step_size))
        x = np.abs(t / step_size - 2.0 * cycle - 1.0)
    exponent = cycle if restart_every is None else np.mod(cycle, restart_every)
    return initial + (maximal - initial) * decay**exponent * np.maximum(0.0, 1.0 - x)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_rate(argument, value):
    if not _is_real(value) or not value >= 0 or not math.isfinite(value):
        raise ValueError(
            f"Expected `{argument}` to be a finite number >= 0, "
            f"received: {argument}={value!r}"
        )
