"""plot_schedules: writes a figure for any mix of schedules, clear errors."""

import sys

import keras
import pytest

from keras_lowrank.schedules import CyclicalLearningRate
from keras_lowrank.schedules import CyclicallyAnnealedLearningRate
from keras_lowrank.schedules.plotting import plot_schedules

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_writes_png_for_mixed_schedules(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "plots" / "schedules.png"
    returned = plot_schedules(
        {
            "CLR": CyclicalLearningRate(1e-4, 1e-2, 20),
            "CALR": CyclicallyAnnealedLearningRate(1e-4, 1e-2, 20),
            "cosine restarts": keras.optimizers.schedules.CosineDecayRestarts(
                1e-2, 40
            ),
            "piecewise": keras.optimizers.schedules.PiecewiseConstantDecay(
                [50], [1e-2, 1e-3]
            ),
            "constant": 1e-3,
        },
        steps=160,
        path=path,
        title="learning rates",
        log_scale=True,
    )
    assert returned == path
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    modules = ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg")
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"keras-lowrank\[plot\]"):
        plot_schedules(
            {"CLR": CyclicalLearningRate(1e-4, 1e-2, 5)}, 10, tmp_path / "x.png"
        )


@pytest.mark.parametrize(
    "schedules, steps, argument",
    [
        ({}, 10, "schedules"),
        ({"CLR": CyclicalLearningRate(1e-4, 1e-2, 5)}, 0, "steps"),
        ({"CLR": CyclicalLearningRate(1e-4, 1e-2, 5)}, [[1, 2]], "steps"),
    ],
)
def test_invalid_arguments_raise(tmp_path, schedules, steps, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        plot_schedules(schedules, steps, tmp_path / "x.png")
