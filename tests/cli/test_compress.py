"""`keras-lowrank compress`: conversion, fine-tuning, saving, and user errors."""

import os

import numpy as np
import pytest

from tests.cli.conftest import DIM, VOCAB, assert_user_error, run_cli


def _load(path, compile=False):
    import keras

    import keras_lowrank.layers  # noqa: F401  registers LowRankEmbedding
    import keras_lowrank.schedules  # noqa: F401  registers the CALR schedule

    return keras.saving.load_model(path, compile=compile)


def test_compression_saves_a_low_rank_model_with_the_same_outputs_up_to_svd(files, capsys, tmp_path):
    from keras_lowrank.decomposition import rank_for_compression
    from keras_lowrank.layers import LowRankEmbedding

    output = tmp_path / "small.keras"
    code, out, _ = run_cli(capsys, "compress", files["model"], output, "--compression", 0.5)
    assert code == 0
    assert "compression" in out and str(output) in out
    original, small = _load(files["model"]), _load(output)
    layer = small.get_layer("embedding")
    assert isinstance(layer, LowRankEmbedding)
    assert layer.rank == rank_for_compression(VOCAB, DIM, 0.5)
    # Independent reference: the best rank-r approximation by numpy's SVD.
    table = original.get_layer("embedding").get_weights()[0].astype(np.float64)
    u, s, vt = np.linalg.svd(table, full_matrices=False)
    best = (u[:, : layer.rank] * s[: layer.rank]) @ vt[: layer.rank]
    np.testing.assert_allclose(np.asarray(layer.embeddings), best, atol=1e-5)
    # The rest of the model is untouched.
    for a, b in zip(original.get_layer("logits").get_weights(), small.get_layer("logits").get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("option, value, rank", [("--rank", 2, 2), ("--energy", 0.99, None)])
def test_rank_and_energy(files, capsys, tmp_path, option, value, rank):
    output = tmp_path / "small.keras"
    code, _, _ = run_cli(capsys, "compress", files["model"], output, option, value)
    assert code == 0
    layer = _load(output).get_layer("embedding")
    if rank is None:
        # Spectrum 2**-i: energy share of the top r values is (1 - 4**-r) / (1 - 4**-d).
        shares = (1 - 4.0 ** -np.arange(1, DIM + 1)) / (1 - 4.0**-DIM)
        rank = int(np.argmax(shares >= value)) + 1
    assert layer.rank == rank


def test_fine_tune_trains_and_saves(files, capsys, tmp_path):
    output = tmp_path / "tuned.keras"
    code, out, _ = run_cli(
        capsys, "compress", files["model"], output, "--compression", 0.5,
        "--fine-tune", files["data"], "--epochs", 1, "--batch-size", 16,
    )
    assert code == 0
    assert "loss" in out
    learning_rate = _load(output, compile=True).optimizer.get_config()["learning_rate"]
    assert learning_rate["class_name"] == "CyclicallyAnnealedLearningRate"


def test_existing_output_needs_overwrite(files, capsys, tmp_path):
    output = tmp_path / "small.keras"
    output.write_bytes(b"")
    code, _, err = run_cli(capsys, "compress", files["model"], output, "--rank", 2)
    assert_user_error(code, err, "--overwrite")
    assert run_cli(capsys, "compress", files["model"], output, "--rank", 2, "--overwrite")[0] == 0


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (("--rank", 12), "rank"),  # saves nothing for a 120 x 12 table
        (("--compression", 1.5), "compression"),
        (("--rank", 2, "--layers", "nope"), "nope"),
        (("--rank", 2, "--epochs", 0, "--fine-tune", "DATA"), "--epochs"),
    ],
)
def test_bad_arguments(files, capsys, tmp_path, extra, fragment):
    extra = [files["data"] if e == "DATA" else e for e in extra]
    code, _, err = run_cli(capsys, "compress", files["model"], tmp_path / "o.keras", *extra)
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "o.keras").exists()


@pytest.mark.parametrize("key, fragment", [("bad_data", "lacks"), ("text", "npz")])
def test_bad_fine_tune_data(files, capsys, tmp_path, key, fragment):
    code, _, err = run_cli(
        capsys, "compress", files["model"], tmp_path / "o.keras", "--rank", 2, "--fine-tune", files[key]
    )
    assert_user_error(code, err, fragment)


def test_output_suffix_and_inputs(files, capsys, tmp_path):
    code, _, err = run_cli(capsys, "compress", files["model"], tmp_path / "o.h5", "--rank", 2)
    assert_user_error(code, err, ".keras")
    code, _, err = run_cli(capsys, "compress", files["no_embedding"], tmp_path / "o.keras", "--rank", 2)
    assert_user_error(code, err, "no Embedding")
    code, _, err = run_cli(capsys, "compress", os.path.join(files["root"], "x.keras"), tmp_path / "o.keras", "--rank", 2)
    assert_user_error(code, err, "no such file")


def test_target_is_required(files, capsys, tmp_path):
    from keras_lowrank.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["compress", files["model"], str(tmp_path / "o.keras")])
    assert exit_info.value.code == 2
