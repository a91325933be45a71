"""`keras-lowrank inspect`: quantized Keras tables are dequantized, tiny tables reported."""

import json

import numpy as np
import pytest

from tests.cli.conftest import CLASSES, DIM, LENGTH, VOCAB, run_cli


def _two_tables(small_rows=2):
    import keras

    ids = keras.Input((LENGTH,), dtype="int32")
    big = keras.layers.Embedding(VOCAB, DIM, name="words")(ids)
    small = keras.layers.Embedding(small_rows, 2, name="tiny")(ids % small_rows)
    x = keras.layers.Concatenate()([big, small])
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(ids, keras.layers.Dense(CLASSES)(x))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_keras_embedding_spectrum_is_the_dequantized_table(capsys, tmp_path, mode):
    import keras

    keras.utils.set_random_seed(0)
    ids = keras.Input((LENGTH,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, DIM, name="embedding")(ids)
    model = keras.Model(ids, keras.layers.Dense(CLASSES)(keras.layers.GlobalAveragePooling1D()(x)))
    model.get_layer("embedding").quantize(mode)
    path = tmp_path / "q.keras"
    model.save(path)
    # Reference: the rows Keras itself looks up, i.e. codes / scales.
    layer = model.get_layer("embedding")
    table = keras.ops.convert_to_numpy(layer(np.arange(VOCAB, dtype="int32")))
    reference = np.linalg.svd(table.astype(np.float64), compute_uv=False)
    codes = keras.ops.convert_to_numpy(layer.embeddings).astype(np.float64)
    assert abs(np.linalg.svd(codes, compute_uv=False)[0] - reference[0]) > 1.0  # the bug's value

    report = tmp_path / "q.json"
    code, _, _ = run_cli(capsys, "inspect", path, "--json", report)
    assert code == 0
    (record,) = json.loads(report.read_text())
    assert record["quantization"] == mode
    np.testing.assert_allclose(record["singular_values"], reference, rtol=1e-4, atol=1e-5)


def test_table_too_small_to_compress_is_reported_not_fatal(capsys, tmp_path):
    path = tmp_path / "two.keras"
    _two_tables().save(path)
    report = tmp_path / "two.json"
    code, out, err = run_cli(capsys, "inspect", path, "--json", report)
    assert code == 0, err
    records = {r["layer"].split("/")[-1]: r for r in json.loads(report.read_text())}
    assert len(records["words"]["options"]) == 4 and records["words"]["note"] is None
    assert records["tiny"]["options"] == []
    assert records["tiny"]["note"].startswith("not compressible")
    assert "not compressible" in out


def test_codebook_table_is_inspected_through_its_decoded_rows(capsys, tmp_path):
    import keras

    import keras_lowrank

    rng = np.random.default_rng(0)
    layer = keras_lowrank.CodebookEmbedding.from_embedding(
        rng.normal(size=(VOCAB, DIM)).astype("float32"), groups=DIM // 2, codes=16, codebook_dtype="int8",
        iterations=3, name="embedding")
    ids = keras.Input((LENGTH,), dtype="int32")
    model = keras.Model(ids, keras.layers.Dense(CLASSES)(keras.layers.GlobalAveragePooling1D()(layer(ids))))
    path = tmp_path / "codebook.keras"
    model.save(path)
    report = tmp_path / "codebook.json"
    code, out, _ = run_cli(capsys, "inspect", path, "--json", report)
    assert code == 0
    whole = sum(np.asarray(w).nbytes for w in model.get_weights())
    assert f"whole model: {whole:,} bytes stored" in out
    (record,) = json.loads(report.read_text())
    assert record["quantization"] == f"codebook {DIM // 2}x16 int8"
    # Bytes: packed 4-bit codes, int8 codebooks and their float32 scales, by hand.
    assert record["stored_bytes"] == VOCAB * (DIM // 4) + 16 * DIM + 4 * (DIM // 2)
    reference = np.linalg.svd(layer.decoded_table().astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(record["singular_values"], reference, rtol=1e-4, atol=1e-5)
