"""Draws learning-rate curves (learning rate vs optimizer step) to a PNG file.

Used by `keras-lowrank schedule --plot` and by the reproduction report to show
CLR next to CALR. matplotlib is an optional dependency (the `[plot]` extra):
it is imported only when a plot is drawn, and it is driven through its Agg
canvas directly so that plotting never changes the user's global matplotlib
backend. This module must not train anything or alter the schedules.
"""

import os

import numpy as np

from keras_lowrank.utils.atomic_write import atomic_path

_MISSING_MATPLOTLIB = (
    "plot_schedules needs matplotlib, which is not installed. Install it "
    'with the plot extra: `pip install "keras-lowrank[plot]"`.'
)


def plot_schedules(schedules, steps, path, *, title=None, log_scale=False):
    """Plots learning rate against step for several schedules in one figure.

    Each schedule is evaluated at every step of `steps` and drawn as one
    line labelled with its key. Schedules of this package are evaluated in
    NumPy (`evaluate`); any other `keras.optimizers.schedules.
    LearningRateSchedule` or callable of the step is evaluated through Keras,
    and a plain number is drawn as a constant rate.

    Example:

    ```python
    import keras_lowrank
    from keras_lowrank.schedules import plot_schedules

    plot_schedules(
        {
            "CLR": keras_lowrank.CyclicalLearningRate(1e-4, 1e-2, 50),
            "CALR": keras_lowrank.CyclicallyAnnealedLearningRate(1e-4, 1e-2, 50),
        },
        steps=400,
        path="schedules.png",
    )
    ```

    Args:
        schedules: A non-empty dict mapping a label to a schedule (a
            `LearningRateSchedule`, a callable of the step, or a number).
        steps: A positive integer N (steps 0 .. N-1) or a 1-D sequence of
            step counts.
        path: Where to write the figure; the format follows the extension
            (PNG when in doubt). Parent folders are created.
        title: Optional title of the figure.
        log_scale: Whether to draw the learning rate on a log scale.

    Returns:
        `path`, as given.

    Raises:
        ImportError: if matplotlib is not installed (names the `[plot]` extra).
        ValueError: on an empty `schedules` dict or invalid `steps`.
    """
    if not isinstance(schedules, dict) or not schedules:
        raise ValueError(
            "Expected `schedules` to be a non-empty dict of label -> schedule, "
            f"received: schedules={schedules!r}"
        )
    step_values = _as_steps(steps)
    curves = {
        str(label): _evaluate(schedule, step_values)
        for label, schedule in schedules.items()
    }

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(_MISSING_MATPLOTLIB) from error

    figure = Figure(figsize=(7.0, 3.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for label, values in curves.items():
        axes.plot(step_values, values, label=label, linewidth=1.5)
    axes.set_xlabel("step")
    axes.set_ylabel("learning rate")
    if log_scale:
        axes.set_yscale("log")
    if title:
        axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
    return path


def _as_steps(steps):
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
        if steps < 1:
            raise ValueError(
                "Expected `steps` to be a positive integer or a 1-D sequence "
                f"of steps, received: steps={steps!r}"
            )
        return np.arange(int(steps))
    values = np.asarray(steps)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(
            "Expected `steps` to be a positive integer or a non-empty 1-D "
            f"sequence of finite step counts, received: steps={steps!r}"
        )
    return values


def _evaluate(schedule, steps):
    """Learning rates of `schedule` at `steps` as a float64 array."""
    if hasattr(schedule, "evaluate"):
        return np.asarray(schedule.evaluate(steps), dtype=np.float64)
    if not callable(schedule):
        return np.full(steps.shape, float(schedule))

    import keras

    # Keras' own schedules are elementwise in the step, so one call on the
    # whole step vector usually works; a schedule that only accepts a scalar
    # step is evaluated step by step instead.
    try:
        values = keras.ops.convert_to_numpy(schedule(steps))
        if np.shape(values) == steps.shape:
            return values.astype(np.float64)
    except Exception:  # noqa: BLE001 - any failure means "not vectorizable".
        pass
    return np.array(
        [float(keras.ops.convert_to_numpy(schedule(step))) for step in steps]
    )
