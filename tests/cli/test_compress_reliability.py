"""`keras-lowrank compress`: interrupted saves, data checks before fine-tuning, flag checks."""

import os
import shutil

import numpy as np
import pytest

from tests.cli.conftest import CLASSES, LENGTH, VOCAB, assert_user_error, run_cli


def test_interrupted_save_over_an_old_output_keeps_it_intact(files, capsys, tmp_path, monkeypatch):
    import keras

    model = tmp_path / "model.keras"
    shutil.copy(files["model"], model)
    old = tmp_path / "old.keras"
    shutil.copy(files["model"], old)
    before = old.read_bytes()
    real_save = keras.Model.save

    def save_then_interrupt(self, path, *args, **kwargs):
        # Half a file on disk, then Ctrl-C, as during a real interrupted save.
        real_save(self, path, *args, **kwargs)
        with open(path, "r+b") as f:
            f.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", save_then_interrupt)
    code, _, err = run_cli(capsys, "compress", model, old, "--rank", 3, "--overwrite")
    assert code == 130
    assert "interrupted" in err
    assert old.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "old.keras"]


def _data(tmp_path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.integers(1, VOCAB, size=(16, LENGTH)).astype("int32"),
        "y": rng.integers(0, CLASSES, size=16),
    }
    arrays["x_val"], arrays["y_val"] = arrays["x"][:4].copy(), arrays["y"][:4].copy()
    for key, (row, value) in overrides.items():
        arrays[key][row] = value
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        ({"y": (5, CLASSES)}, ("y holds label 3 (row 5)", f"labels must be in [0, {CLASSES - 1}]")),
        ({"y_val": (2, -1)}, ("y_val holds label -1 (row 2)",)),
        ({"x": (7, VOCAB)}, (f"x holds id {VOCAB} (row 7)", f"ids must be in [0, {VOCAB})")),
        ({"x_val": (1, -4)}, ("x_val holds id -4 (row 1)",)),
    ],
)
def test_out_of_range_fine_tune_data_is_named_before_training(files, capsys, tmp_path, overrides, fragments):
    data = _data(tmp_path, **overrides)
    code, out, err = run_cli(
        capsys, "compress", files["model"], tmp_path / "o.keras", "--rank", 2, "--fine-tune", data,
    )
    assert_user_error(code, err, str(data), *fragments)
    assert "Epoch" not in out and not (tmp_path / "o.keras").exists()


@pytest.mark.parametrize(
    "flag, value",
    [("--epochs", 2), ("--batch-size", 8), ("--learning-rate", 1e-3),
     ("--max-learning-rate", 1e-2), ("--decay", 0.9), ("--loss", "mse")],
)
def test_fine_tune_flags_without_fine_tune_are_an_error(files, capsys, tmp_path, flag, value):
    code, _, err = run_cli(capsys, "compress", files["model"], tmp_path / "o.keras", "--rank", 2, flag, value)
    assert_user_error(code, err, flag, "only with --fine-tune")
