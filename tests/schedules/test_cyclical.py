"""CyclicalLearningRate and CyclicallyAnnealedLearningRate: values, graph use,
serialization with the optimizer, use in `fit`, and argument validation.

The reference values are built independently of the formula in the module:
the triangle is walked cycle by cycle, rising then falling in equal steps.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lowrank.schedules import CyclicalLearningRate
from keras_lowrank.schedules import CyclicallyAnnealedLearningRate


def walk_triangle(num_steps, low, high, step_size, decay=1.0, restart_every=None):
    """Learning rates for steps 0..num_steps-1, walking the cycles one by one."""
    rates = []
    cycle = 0
    while len(rates) < num_steps:
        exponent = cycle if restart_every is None else cycle % restart_every
        peak = low + (high - low) * decay**exponent
        for position in range(2 * step_size):
            if position <= step_size:
                fraction = position / step_size
            else:
                fraction = (2 * step_size - position) / step_size
            rates.append(low + (peak - low) * fraction)
        cycle += 1
    return np.array(rates[:num_steps])


def schedule_values(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


@pytest.mark.parametrize(
    "decay, restart_every", [(1.0, None), (0.5, None), (0.8, 2), (0.3, 3)]
)
def test_values_match_walked_triangle(decay, restart_every):
    schedule = CyclicallyAnnealedLearningRate(
        1e-3, 1e-1, step_size=5, decay=decay, restart_every=restart_every
    )
    steps = np.arange(70)
    expected = walk_triangle(70, 1e-3, 1e-1, 5, decay, restart_every)
    got = keras.ops.convert_to_numpy(schedule(steps))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(schedule.evaluate(steps), expected, rtol=1e-12)


def test_values_at_hand_computed_steps():
    schedule = CyclicallyAnnealedLearningRate(0.1, 1.1, step_size=10, decay=0.5)
    # step: floor at 0, halfway up, first peak, floor, second peak (half).
    expected = {0: 0.1, 5: 0.6, 10: 1.1, 15: 0.6, 20: 0.1, 30: 0.6, 50: 0.35}
    for step, rate in expected.items():
        assert float(schedule(step)) == pytest.approx(rate, rel=1e-6)


def test_clr_is_calr_with_decay_one():
    clr = CyclicalLearningRate(1e-4, 1e-2, step_size=7)
    calr = CyclicallyAnnealedLearningRate(1e-4, 1e-2, step_size=7, decay=1.0)
    steps = np.arange(200)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(clr(steps)),
        keras.ops.convert_to_numpy(calr(steps)),
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clr(steps)),
        walk_triangle(200, 1e-4, 1e-2, 7),
        rtol=1e-6,
    )


def test_peaks_decay_monotonically():
    step_size = 4
    schedule = CyclicallyAnnealedLearningRate(0.0, 1.0, step_size, decay=0.7)
    peaks = schedule_values(schedule, [step_size * (2 * k + 1) for k in range(8)])
    assert np.all(np.diff(peaks) < 0)
    np.testing.assert_allclose(peaks, 0.7 ** np.arange(8), rtol=1e-6)
    # Every value of a cycle stays under that cycle's peak.
    values = keras.ops.convert_to_numpy(schedule(np.arange(64)))
    for k in range(8):
        assert values[8 * k : 8 * k + 8].max() == pytest.approx(peaks[k], rel=1e-6)


def test_restarts_reset_the_peak():
    step_size, restart_every = 3, 3
    schedule = CyclicallyAnnealedLearningRate(
        0.01, 0.11, step_size, decay=0.5, restart_every=restart_every
    )
    peaks = schedule_values(schedule, [step_size * (2 * k + 1) for k in range(7)])
    expected = 0.01 + 0.1 * 0.5 ** (np.arange(7) % restart_every)
    np.testing.assert_allclose(peaks, expected, rtol=1e-6)
    assert peaks[3] == pytest.approx(0.11, rel=1e-6)
    assert peaks[6] == pytest.approx(0.11, rel=1e-6)


def test_schedule_starts_at_floor_and_never_leaves_bounds():
    schedule = CyclicallyAnnealedLearningRate(2e-3, 5e-2, step_size=9, decay=0.9)
    values = keras.ops.convert_to_numpy(schedule(np.arange(500)))
    assert values[0] == pytest.approx(2e-3, rel=1e-6)
    assert values.min() >= 2e-3 * (1 - 1e-6)
    assert values.max() <= 5e-2 * (1 + 1e-6)


def test_precision_late_in_training():
    # The phase inside the cycle stays exact at ten million steps in float32.
    schedule = CyclicallyAnnealedLearningRate(0.0, 1.0, step_size=7, decay=1.0)
    step = 9_999_997  # 9_999_997 mod 14 = 7 -> a peak
    assert float(schedule(step)) == pytest.approx(1.0, abs=1e-6)
    assert float(schedule(step + 3)) == pytest.approx(4 / 7, abs=1e-6)


def _exact(step, initial, maximal, step_size, decay=1.0):
    # The formula in exact rational arithmetic, the reference for huge steps.
    from fractions import Fraction

    t, s = Fraction(step), Fraction(step_size)
    cycle = t // (2 * s)
    x = abs(t / s - 2 * cycle - 1)
    height = Fraction(maximal) - Fraction(initial)
    return float(Fraction(initial) + height * Fraction(decay) ** int(cycle) * max(0, 1 - x))


@pytest.mark.parametrize(
    "step", [10**9 + 50, 10**9 + 137, 2**31 + 77, 2**40 + 3, 10**15 + 50]
)
@pytest.mark.parametrize("decay, restart_every", [(1.0, None), (0.5, 3)])
def test_exact_beyond_float32_steps(step, decay, restart_every):
    schedule = CyclicallyAnnealedLearningRate(
        1e-4, 1e-2, step_size=100, decay=decay, restart_every=restart_every
    )
    cycle = step // 200
    exponent = cycle if restart_every is None else cycle % restart_every
    expected = _exact(step - (cycle - exponent) * 200, 1e-4, 1e-2, 100, decay)
    # A Python int, an int64 variable in a graph, and `evaluate` agree.
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)
    variable = tf.Variable(step, dtype=tf.int64)
    assert float(tf.function(schedule)(variable)) == pytest.approx(expected, rel=1e-6)
    assert float(schedule.evaluate(step)) == pytest.approx(expected, rel=1e-12)


def test_clr_at_a_billion_steps_matches_the_formula():
    # The example: float32 steps gave 0.00644.
    schedule = CyclicalLearningRate(1e-4, 1e-2, 100)
    assert float(schedule(10**9 + 50)) == pytest.approx(0.00505, rel=1e-6)


def test_non_integer_step_size():
    schedule = CyclicalLearningRate(0.0, 1.0, step_size=2.5)
    np.testing.assert_allclose(
        schedule_values(schedule, [0, 1, 2.5, 4, 5, 7.5]),
        [0.0, 0.4, 1.0, 0.4, 0.0, 1.0],
        atol=1e-6,
    )


def test_inside_tf_function_with_variable_step():
    schedule = CyclicallyAnnealedLearningRate(1e-3, 1e-1, step_size=5, decay=0.5)
    step = tf.Variable(0, dtype=tf.int64)

    @tf.function
    def advance():
        rate = schedule(step)
        step.assign_add(1)
        return rate

    got = np.array([float(advance()) for _ in range(25)])
    np.testing.assert_allclose(
        got, walk_triangle(25, 1e-3, 1e-1, 5, 0.5), rtol=1e-6
    )


class LearningRateRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))


def small_regression_model(schedule):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    return model


def test_used_by_model_fit():
    schedule = CyclicallyAnnealedLearningRate(1e-3, 1e-2, step_size=2, decay=0.5)
    model = small_regression_model(schedule)
    recorder = LearningRateRecorder()
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    model.fit(x, x[:, :1], batch_size=4, epochs=1, callbacks=[recorder], verbose=0)
    assert len(recorder.rates) == 10
    np.testing.assert_allclose(
        recorder.rates, walk_triangle(10, 1e-3, 1e-2, 2, 0.5), rtol=1e-6
    )


def test_numpy_scalar_arguments_serialize_to_json():
    schedule = CyclicallyAnnealedLearningRate(
        np.float32(1e-3), np.float64(1e-2), np.int64(8), restart_every=np.int32(2)
    )
    config = json.loads(json.dumps(schedule.get_config()))
    assert config["step_size"] == 8 and config["restart_every"] == 2


def test_config_round_trip():
    calr = CyclicallyAnnealedLearningRate(
        1e-4, 1e-2, step_size=11, decay=0.25, restart_every=4, name="calr"
    )
    clr = CyclicalLearningRate(1e-4, 1e-2, step_size=11, name="clr")
    assert set(clr.get_config()) == {
        "initial_learning_rate",
        "maximal_learning_rate",
        "step_size",
        "name",
    }
    steps = np.arange(100)
    for schedule in (calr, clr):
        restored = keras.optimizers.schedules.deserialize(
            json.loads(json.dumps(keras.optimizers.schedules.serialize(schedule)))
        )
        assert type(restored) is type(schedule)
        assert restored.get_config() == schedule.get_config()
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(restored(steps)),
            keras.ops.convert_to_numpy(schedule(steps)),
        )


_LOAD_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import keras
    import keras_lowrank.schedules  # registers the schedules

    result = {}
    for path in sys.argv[1:]:
        model = keras.saving.load_model(path)
        schedule = model.optimizer._learning_rate
        result[path] = {
            "class": type(schedule).__name__,
            "values": [float(schedule(step)) for step in range(0, 60, 3)],
            "current": float(model.optimizer.learning_rate),
        }
    print(json.dumps(result))
    """
)


def test_saved_with_optimizer_in_keras_file_and_loaded_in_fresh_process(tmp_path):
    schedules = {
        str(tmp_path / "calr.keras"): CyclicallyAnnealedLearningRate(
            1e-3, 1e-1, step_size=4, decay=0.6, restart_every=3
        ),
        str(tmp_path / "clr.keras"): CyclicalLearningRate(1e-3, 1e-1, step_size=4),
    }
    expected = {}
    x = np.ones((10, 3), dtype="float32")
    for path, schedule in schedules.items():
        model = small_regression_model(schedule)
        model.fit(x, x[:, :1], batch_size=2, epochs=1, verbose=0)  # 5 steps
        model.save(path)
        expected[path] = {
            "class": type(schedule).__name__,
            "values": [float(schedule(step)) for step in range(0, 60, 3)],
            "current": float(model.optimizer.learning_rate),
        }
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, "-c", _LOAD_IN_FRESH_PROCESS, *schedules],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    assert loaded == expected


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"step_size": 0}, "step_size"),
        ({"step_size": -3}, "step_size"),
        ({"step_size": float("inf")}, "step_size"),
        ({"step_size": "10"}, "step_size"),
        ({"initial_learning_rate": -1e-3}, "initial_learning_rate"),
        ({"maximal_learning_rate": -1.0}, "maximal_learning_rate"),
        ({"initial_learning_rate": float("nan")}, "initial_learning_rate"),
        ({"maximal_learning_rate": 1e-4}, "maximal_learning_rate"),
        ({"decay": 0.0}, "decay"),
        ({"decay": 1.5}, "decay"),
        ({"decay": -0.5}, "decay"),
        ({"restart_every": 0}, "restart_every"),
        ({"restart_every": 2.5}, "restart_every"),
        ({"restart_every": True}, "restart_every"),
    ],
)
def test_invalid_arguments_raise(kwargs, argument):
    arguments = {
        "initial_learning_rate": 1e-3,
        "maximal_learning_rate": 1e-2,
        "step_size": 10,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=f"`{argument}`") as error:
        CyclicallyAnnealedLearningRate(**arguments)
    assert f"{argument}={kwargs[argument]!r}" in str(error.value)


def test_clr_validates_like_calr():
    with pytest.raises(ValueError, match="step_size=0"):
        CyclicalLearningRate(1e-3, 1e-2, step_size=0)
    with pytest.raises(ValueError, match="maximal_learning_rate"):
        CyclicalLearningRate(1e-2, 1e-3, step_size=5)


def test_equal_bounds_give_a_constant_rate():
    schedule = CyclicalLearningRate(3e-3, 3e-3, step_size=5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(schedule(np.arange(30))), 3e-3, rtol=1e-6
    )
