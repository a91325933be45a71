"""Atomic writes: the target is either complete and new or old and untouched."""

import json
import os

import pytest

from keras_lowrank.utils.atomic_write import atomic_open
from keras_lowrank.utils.atomic_write import atomic_path
from keras_lowrank.utils.atomic_write import write_json
from keras_lowrank.utils.atomic_write import write_text

pytestmark = pytest.mark.backend_agnostic


def _leftovers(folder, keep):
    return sorted(name for name in os.listdir(folder) if name not in keep)


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, error):
    target = tmp_path / "results.json"
    target.write_text("old\n")
    with pytest.raises(error):
        with atomic_open(target, "w") as f:
            f.write("partial")
            f.flush()
            raise error()
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path, {"results.json"}) == []


def test_success_replaces_and_keeps_the_suffixes(tmp_path):
    target = tmp_path / "cache.weights.h5"
    with atomic_path(target) as tmp:
        # Keras checks `.weights.h5` / `.keras`, matplotlib infers the format.
        assert tmp.endswith(".weights.h5")
        assert os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as f:
            f.write(b"new")
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path, {"cache.weights.h5"}) == []


def test_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "notes.md"
    target.write_text("old")
    os.chmod(target, 0o640)
    write_text(target, "new")
    assert target.read_text() == "new"
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o640)


def test_write_json_and_folder_target(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1}, indent=2)
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    with pytest.raises(ValueError, match="folder"):
        with atomic_path(tmp_path):
            pass


def test_interrupted_keras_save_keeps_the_old_model(tmp_path, monkeypatch):
    import keras

    from keras_lowrank.utils.atomic_write import save_model

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    target = tmp_path / "m.keras"
    target.write_bytes(b"old model")

    def interrupted_save(self, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, target)
    assert target.read_bytes() == b"old model"
    assert _leftovers(tmp_path, {"m.keras"}) == []
