"""`keras-lowrank export`: a verified .tflite file from a saved model, and user errors."""

import json

import numpy as np
import pytest

from tests.cli.conftest import LENGTH, VOCAB, assert_user_error, run_cli


def _compressed(files, capsys, tmp_path):
    path = tmp_path / "small.keras"
    assert run_cli(capsys, "compress", files["model"], path, "--rank", 3)[0] == 0
    return path


def test_export_runs_like_keras(files, capsys, tmp_path):
    pytest.importorskip("ai_edge_litert")
    import keras

    import keras_lowrank.layers  # noqa: F401

    from keras_lowrank.export import run_tflite

    model_path = _compressed(files, capsys, tmp_path)
    output, report = tmp_path / "small.tflite", tmp_path / "report.json"
    code, out, _ = run_cli(capsys, "export", model_path, output, "--json", report)
    assert code == 0
    assert str(output) in out and "bytes" in out
    assert json.loads(report.read_text())["bytes"] == output.stat().st_size
    # Independent check: run the file ourselves against the Keras model.
    ids = np.random.default_rng(1).integers(0, VOCAB, size=(4, LENGTH)).astype("int32")
    expected = keras.saving.load_model(model_path, compile=False).predict(ids, verbose=0)
    np.testing.assert_allclose(run_tflite(output.read_bytes(), ids), expected, atol=1e-4)


def test_no_fold_and_int8(files, capsys, tmp_path):
    pytest.importorskip("ai_edge_litert")
    model_path = _compressed(files, capsys, tmp_path)
    code, out, _ = run_cli(capsys, "export", model_path, tmp_path / "a.tflite", "--no-fold")
    assert code == 0
    assert "fold=False" in out
    code, out, _ = run_cli(
        capsys, "export", files["model"], tmp_path / "b.tflite",
        "--quantize", "int8", "--representative", files["data"],
    )
    assert code == 0
    assert "quantize=int8" in out


def test_int4_export_writes_a_smaller_file_that_runs_like_keras(files, capsys, tmp_path):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("ai_edge_quantizer")
    import keras

    from keras_lowrank.export import run_tflite
    from keras_lowrank.export.tflite import TOLERANCES

    model_path = _compressed(files, capsys, tmp_path)
    assert run_cli(capsys, "export", model_path, tmp_path / "float.tflite")[0] == 0
    code, out, _ = run_cli(capsys, "export", model_path, tmp_path / "int4.tflite", "--quantize", "int4")
    assert code == 0 and "quantize=int4" in out
    assert (tmp_path / "int4.tflite").stat().st_size < (tmp_path / "float.tflite").stat().st_size
    ids = np.random.default_rng(1).integers(0, VOCAB, size=(4, LENGTH)).astype("int32")
    expected = keras.saving.load_model(model_path, compile=False).predict(ids, verbose=0)
    got = run_tflite((tmp_path / "int4.tflite").read_bytes(), ids)
    np.testing.assert_allclose(got, expected, atol=TOLERANCES["int4"])


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (("--quantize", "int8"), "--representative"),
        (("--representative", "DATA"), "only with --quantize int8"),
        (("--quantize", "int8", "--representative", "BAD"), "no array x"),
        (("--sequence-length", 0), "--sequence-length"),
    ],
)
def test_bad_arguments(files, capsys, tmp_path, extra, fragment):
    extra = [{"DATA": files["data"], "BAD": files["bad_data"]}.get(e, e) for e in extra]
    code, _, err = run_cli(capsys, "export", files["model"], tmp_path / "m.tflite", *extra)
    assert_user_error(code, err, fragment)


def test_bad_paths(files, capsys, tmp_path):
    code, _, err = run_cli(capsys, "export", files["model"], tmp_path / "m.bin")
    assert_user_error(code, err, ".tflite")
    code, _, err = run_cli(capsys, "export", files["text"], tmp_path / "m.tflite")
    assert_user_error(code, err, "not a Keras 3 .keras file")
    code, _, err = run_cli(capsys, "export", files["no_embedding"], tmp_path / "m.tflite")
    assert_user_error(code, err, "no Embedding")


def test_unknown_quantize_mode_is_an_argparse_error(files, capsys, tmp_path):
    from keras_lowrank.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["export", files["model"], str(tmp_path / "m.tflite"), "--quantize", "int2"])
    assert exit_info.value.code == 2
