"""`keras-lowrank schedule`: printed values follow the CLR/CALR formula; --plot draws them."""

import numpy as np
import pytest

from tests.cli.conftest import assert_user_error, run_cli


def _reference(step, initial, maximal, step_size, decay):
    # The formula of Acharya et al. (2019), written out independently.
    k = np.floor(step / (2 * step_size))
    x = abs(step / step_size - 2 * k - 1)
    return initial + (maximal - initial) * decay**k * max(0.0, 1 - x)


def test_printed_values_follow_the_formula(capsys):
    code, out, _ = run_cli(
        capsys, "schedule", "--initial", 0.001, "--maximal", 0.01, "--step-size", 10,
        "--decay", 0.5, "--steps", 80,
    )
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    assert len(rows) == 9
    for step, clr, calr in rows:
        step = int(step)
        assert float(clr) == pytest.approx(_reference(step, 0.001, 0.01, 10, 1.0), rel=1e-5)
        assert float(calr) == pytest.approx(_reference(step, 0.001, 0.01, 10, 0.5), rel=1e-5)


def test_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "lr.png"
    code, out, _ = run_cli(capsys, "schedule", "--plot", path)
    assert code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "extra", [("--step-size", 0), ("--steps", -5), ("--initial", 0.1, "--maximal", 0.01)]
)
def test_bad_arguments(capsys, extra):
    code, _, err = run_cli(capsys, "schedule", *extra)
    assert_user_error(code, err)
