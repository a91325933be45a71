"""`.keras` files written on one Keras backend load on every backend, same outputs.

`fixtures/` holds tiny classifiers that `fixtures/make_cross_backend_models.py`
compressed and saved on each backend (TensorFlow, JAX, PyTorch): factorized
(`factorize_embeddings`), then int8 or int4 quantized, and pruned then
factorized (`prune_vocabulary`). Each `.keras` file comes with an `.npz` of
probe ids and the outputs the saving backend computed for them. Whatever
backend runs this file loads all of them, checks the embedding layer's class
and quantization mode, and compares outputs: float factors reload bit for
bit, and quantized ones store the same integer codes and float32 scales, so
every backend stays within float rounding (1e-5) of every other.

Regenerate the fixtures (after a change to the saved format, or to add a
model), from the repository root, with each backend's interpreter
(`PYTHONPATH=.` only matters where the package is not installed):

    KERAS_BACKEND=tensorflow PYTHONPATH=. python3 tests/backends/fixtures/make_cross_backend_models.py
    KERAS_BACKEND=jax PYTHONPATH=. /tmp/venv-jax/bin/python tests/backends/fixtures/make_cross_backend_models.py
    KERAS_BACKEND=torch PYTHONPATH=. /tmp/venv-torch/bin/python tests/backends/fixtures/make_cross_backend_models.py
"""

import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras

import keras_lowrank

pytestmark = pytest.mark.backend_agnostic

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKENDS = ("tensorflow", "jax", "torch")
MODELS = ("low_rank", "low_rank_int8", "low_rank_int4", "pruned_low_rank")
STEMS = [f"{backend}_{model}" for backend in BACKENDS for model in MODELS]


def _load(stem):
    model = keras.saving.load_model(os.path.join(FIXTURES, f"{stem}.keras"))
    with np.load(os.path.join(FIXTURES, f"{stem}.npz")) as stored:
        return model, {key: stored[key] for key in stored.files}


def test_every_backend_wrote_every_model():
    # A missing fixture would otherwise just mean one case fewer.
    paths = glob.glob(os.path.join(FIXTURES, "*.keras"))
    written = sorted(os.path.basename(path)[: -len(".keras")] for path in paths)
    assert written == sorted(STEMS)
    assert all(os.path.exists(os.path.join(FIXTURES, f"{stem}.npz")) for stem in STEMS)


@pytest.mark.parametrize("stem", STEMS)
def test_loads_with_the_saved_layers(stem):
    model, stored = _load(stem)
    layer = model.get_layer("tokens")
    assert type(layer).__name__ == str(stored["layer_class"])
    if stem.endswith("pruned_low_rank"):
        assert isinstance(layer, keras_lowrank.PrunedEmbedding) and layer.remap
        layer = layer.embedding
    assert isinstance(layer, keras_lowrank.LowRankEmbedding)
    mode = stem.rsplit("_", 1)[-1]
    assert layer.quantization_mode == (mode if mode in ("int8", "int4") else None)


@pytest.mark.parametrize("stem", STEMS)
def test_outputs_match_the_saving_backend(stem):
    model, stored = _load(stem)
    outputs = keras.ops.convert_to_numpy(model(stored["ids"]))
    np.testing.assert_allclose(outputs, stored["outputs"], rtol=1e-5, atol=1e-5)


def test_loading_imports_no_tensorflow():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        pytest.skip("the TensorFlow backend imports TensorFlow itself")
    # A fresh process: in this one, other test files may have imported anything.
    code = f"""
        import glob, os, sys
        import keras, keras_lowrank
        for path in sorted(glob.glob(os.path.join({FIXTURES!r}, "*.keras"))):
            keras.saving.load_model(path)
        print("TF", "tensorflow" in sys.modules)
        """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPOSITORY,
        env=dict(os.environ, KERAS_BACKEND=backend), timeout=300,
    )
    assert "TF False" in done.stdout, done.stdout + done.stderr
