"""The backend-agnostic core, end to end, on whichever Keras backend runs the suite.

`.ci/run` runs this file under `KERAS_BACKEND=jax` and `torch` in venvs with
no TensorFlow installed: LowRankEmbedding fits, surgery reproduces the dense
rank-r model, CALR drives `fit`, int8 quantization survives a `.keras` round
trip, `compress()` meets its budget, and nothing imported TensorFlow on the
way. The command line answers `--help` without importing Keras at all.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras

import keras_lowrank

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, LENGTH, CLASSES = 200, 16, 8, 3
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(n, LENGTH)).astype("int32")
    labels = rng.integers(0, CLASSES, size=n)
    ids[:, 0] = 1 + labels
    return ids, labels


def _classifier(embedding):
    return keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32"),
            embedding,
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = _classifier(keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding"))
    model.compile(keras.optimizers.Adam(1e-2), LOSS, metrics=["accuracy"])
    model.fit(*_data(), epochs=2, batch_size=32, verbose=0)
    return model


def test_low_rank_embedding_fits():
    keras.utils.set_random_seed(1)
    model = _classifier(keras_lowrank.LowRankEmbedding(VOCAB, DIM, 4, mask_zero=True))
    model.compile(keras.optimizers.Adam(1e-2), LOSS)
    history = model.fit(*_data(), epochs=3, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_surgery_equals_the_dense_rank_r_model(trained):
    rank = 5
    small = keras_lowrank.factorize_embeddings(trained, rank=rank)
    layer = small.get_layer("embedding")
    assert isinstance(layer, keras_lowrank.LowRankEmbedding)
    table = keras.ops.convert_to_numpy(trained.get_layer("embedding").embeddings)
    u, s, vt = np.linalg.svd(table.astype("float64"), full_matrices=False)
    dense = _classifier(keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding"))
    dense.build((None, LENGTH))
    dense.get_layer("embedding").set_weights([((u[:, :rank] * s[:rank]) @ vt[:rank]).astype("float32")])
    dense.get_layer("logits").set_weights(trained.get_layer("logits").get_weights())
    ids = _data(64, seed=3)[0]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small(ids)), keras.ops.convert_to_numpy(dense(ids)), atol=1e-5
    )


def test_calr_drives_fit(trained):
    small = keras_lowrank.factorize_embeddings(trained, compression=0.8)
    schedule = keras_lowrank.CyclicallyAnnealedLearningRate(1e-4, 1e-2, step_size=4)
    optimizer = keras.optimizers.Adam(schedule)
    small.compile(optimizer, LOSS)
    small.fit(*_data(), epochs=1, batch_size=32, verbose=0)
    steps = int(keras.ops.convert_to_numpy(optimizer.iterations))
    assert steps == 8
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(
        float(keras.ops.convert_to_numpy(schedule(steps))), rel=1e-6
    )


def test_int8_quantize_and_keras_round_trip(trained, tmp_path):
    small = keras_lowrank.factorize_embeddings(trained, rank=6)
    small.quantize("int8")
    assert small.get_layer("embedding").quantization_mode == "int8"
    ids = _data(32, seed=4)[0]
    expected = keras.ops.convert_to_numpy(small(ids))
    path = tmp_path / "int8.keras"
    small.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("embedding").quantization_mode == "int8"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(ids)), expected, atol=1e-6)


def test_compress_meets_its_budget(trained):
    budget = 0.3
    small, report = keras_lowrank.compress(
        trained, _data(256, 5), _data(128, 6), size=budget, return_report=True,
        epochs=1, candidates=2, verbose=0, seed=0,
    )
    full = VOCAB * DIM * 4
    assert keras_lowrank.compression.embedding_bytes(small) <= budget * full
    assert small.predict(_data(16, 7)[0], verbose=0).shape == (16, CLASSES)
    assert report is not None


def test_tensorflow_never_imported():
    if keras.backend.backend() == "tensorflow":
        pytest.skip("the TensorFlow backend imports TensorFlow itself")
    # Runs last in this file: every test above went through the core.
    assert "tensorflow" not in sys.modules
    assert "tensorflow_datasets" not in sys.modules


def test_tensorflow_only_features_name_the_extra():
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        pytest.skip("TensorFlow is installed here")
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed here")
    with pytest.raises(ImportError, match=r"keras-lowrank\[cpu\]"):
        keras_lowrank.data.load_dataset("trec")


def _run(code, **env):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        env=dict(os.environ, **env), timeout=120,
    )


def test_command_line_help_imports_no_keras():
    done = _run(
        """
        import sys
        sys.argv[0] = "keras-lowrank"  # as the console script starts
        from keras_lowrank.cli.main import main
        for argv in (["--help"], ["compress", "--help"], ["bench", "train", "--help"], ["compress"]):
            try:
                main(argv)
            except SystemExit:
                pass
        heavy = sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr
    assert "keras-lowrank: error: compress:" in done.stderr


def test_python_dash_m_help_imports_no_keras():
    # `python -m keras_lowrank` runs the same command line: no backend import
    # before the arguments are parsed, so --help answers at once.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "keras_lowrank", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    heavy = sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in imported)
    assert heavy == [], heavy


def test_import_keras_lowrank_imports_no_tensorflow():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        pytest.skip("the TensorFlow backend imports TensorFlow itself")
    done = _run(
        """
        import sys, keras_lowrank
        keras_lowrank.LowRankEmbedding, keras_lowrank.data.Vocabulary, keras_lowrank.models
        print("TF", "tensorflow" in sys.modules, "tensorflow_datasets" in sys.modules)
        """,
        KERAS_BACKEND=backend,
    )
    assert "TF False False" in done.stdout, done.stdout + done.stderr
