"""`keras-lowrank inspect`: the table, the spectrum against numpy, plots, and user errors."""

import json
import os

import numpy as np
import pytest

from tests.cli.conftest import DIM, VOCAB, assert_user_error, run_cli


def test_table_lists_the_embedding_and_compression_options(files, capsys):
    code, out, _ = run_cli(capsys, "inspect", files["model"])
    assert code == 0
    assert "embedding" in out and "Embedding" in out
    assert f"{VOCAB}x{DIM}" in out
    for compression in ("0.50", "0.80", "0.90", "0.95"):
        assert compression in out


def test_json_matches_numpy_svd(files, capsys, tmp_path):
    import keras

    from keras_lowrank.decomposition import rank_for_compression

    path = tmp_path / "inspect.json"
    code, _, _ = run_cli(capsys, "inspect", files["model"], "--json", path)
    assert code == 0
    (record,) = json.loads(path.read_text())
    table = keras.saving.load_model(files["model"], compile=False).get_layer("embedding").get_weights()[0]
    reference = np.linalg.svd(table.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(record["singular_values"], reference, rtol=1e-4, atol=1e-6)
    assert record["params"] == VOCAB * DIM
    assert record["rank"] is None
    for option in record["options"]:
        rank = rank_for_compression(VOCAB, DIM, option["compression"])
        assert option["rank"] == rank
        assert option["params"] == rank * (VOCAB + DIM)
        expected = np.sum(reference[:rank] ** 2) / np.sum(reference**2)
        assert option["energy_kept"] == pytest.approx(expected, rel=1e-4)


def test_plot_writes_a_png(files, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "spectrum.png"
    code, out, _ = run_cli(capsys, "inspect", files["model"], "--plot", path)
    assert code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(path) in out


def test_factorized_model_shows_its_rank(files, capsys, tmp_path):
    output = tmp_path / "small.keras"
    assert run_cli(capsys, "compress", files["model"], output, "--rank", 3)[0] == 0
    path = tmp_path / "small.json"
    code, out, _ = run_cli(capsys, "inspect", output, "--json", path)
    assert code == 0
    assert "LowRankEmbedding" in out
    (record,) = json.loads(path.read_text())
    assert record["rank"] == 3
    assert record["params"] == 3 * (VOCAB + DIM)
    assert len(record["singular_values"]) == 3


@pytest.mark.parametrize(
    "key, fragment",
    [
        ("text", "not a Keras 3 .keras file"),
        ("h5", "legacy HDF5"),
        ("root", "is a folder"),
        ("no_embedding", "has no Embedding"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(files, capsys, key, fragment):
    code, _, err = run_cli(capsys, "inspect", files[key])
    assert_user_error(code, err, fragment)


def test_missing_file(files, capsys):
    missing = os.path.join(files["root"], "nowhere.keras")
    code, _, err = run_cli(capsys, "inspect", missing)
    assert_user_error(code, err, "no such file", missing)


def test_unknown_custom_object_names_the_class(custom_model, capsys):
    path, _, _ = custom_model
    code, _, err = run_cli(capsys, "inspect", path)
    assert_user_error(code, err, "Doubler", "--custom-module")


def test_custom_module_makes_it_load(custom_model, capsys, monkeypatch):
    path, folder, module_name = custom_model
    monkeypatch.syspath_prepend(folder)
    code, out, _ = run_cli(capsys, "inspect", path, "--custom-module", module_name)
    assert code == 0
    assert "embedding" in out


def test_unimportable_custom_module(files, capsys):
    code, _, err = run_cli(capsys, "inspect", files["model"], "--custom-module", "no_such_module_xyz")
    assert_user_error(code, err, "no_such_module_xyz")


def test_debug_shows_the_traceback(files, capsys):
    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.main import main

    with pytest.raises(CLIError):
        main(["--debug", "inspect", files["text"]])
