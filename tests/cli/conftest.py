"""Small saved models and data files shared by the command-line tests."""

import numpy as np
import pytest

VOCAB, DIM, LENGTH, CLASSES = 120, 12, 8, 3


def _classifier(name="classifier"):
    import keras

    return keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32"),
            keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(CLASSES, name="logits"),
        ],
        name=name,
    )


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """Paths of the saved models and data files, built once per session."""
    import keras

    root = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    paths = {}

    model = _classifier()
    # A table with a decaying spectrum, so that energy and rank choice are
    # meaningfully different from a flat random table.
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(VOCAB, DIM)))
    v, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    s = 2.0 ** -np.arange(DIM)
    model.get_layer("embedding").embeddings.assign((u * s) @ v.T)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    paths["model"] = root / "model.keras"
    model.save(paths["model"])

    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    paths["no_embedding"] = root / "dense.keras"
    dense.save(paths["no_embedding"])

    x = rng.integers(1, VOCAB, size=(48, LENGTH)).astype("int32")
    y = rng.integers(0, CLASSES, size=48)
    paths["data"] = root / "data.npz"
    np.savez(paths["data"], x=x, y=y, x_val=x[:8], y_val=y[:8])
    paths["bad_data"] = root / "bad.npz"
    np.savez(paths["bad_data"], ids=x, labels=y)

    paths["text"] = root / "notes.keras"
    paths["text"].write_text("not a model\n")
    paths["h5"] = root / "model.h5"
    paths["h5"].write_bytes(b"\x89HDF\r\n\x1a\n")
    paths["root"] = root
    return {key: str(value) for key, value in paths.items()}


@pytest.fixture(scope="session")
def custom_model(tmp_path_factory):
    """A `.keras` file holding a layer class registered by a separate module.

    Returns `(path, folder, module_name)`; the module is importable once
    `folder` is on `sys.path`.
    """
    import importlib
    import sys

    import keras

    folder = tmp_path_factory.mktemp("custom")
    module_name = "cli_test_custom_layers"
    (folder / f"{module_name}.py").write_text(
        "import keras\n\n\n"
        "@keras.saving.register_keras_serializable(package='cli_test')\n"
        "class Doubler(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return x * 2\n"
    )
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
        model = keras.Sequential(
            [
                keras.Input((LENGTH,), dtype="int32"),
                keras.layers.Embedding(VOCAB, DIM, name="embedding"),
                module.Doubler(),
                keras.layers.GlobalAveragePooling1D(),
                keras.layers.Dense(CLASSES),
            ]
        )
        path = folder / "custom.keras"
        model.save(path)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module_name, None)
    # Forget the registration, as a fresh process that never imported the
    # module would.
    keras.saving.get_custom_objects().pop("cli_test>Doubler", None)
    return str(path), str(folder), module_name


def run_cli(capsys, *argv):
    """Runs `keras-lowrank ARGV` in-process; returns (exit code, stdout, stderr)."""
    from keras_lowrank.cli.main import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code, err, *fragments):
    """A user error: exit 2 and exactly one line on stderr, no traceback."""
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-lowrank: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
