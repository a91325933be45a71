"""TFLite export: parity with Keras per mode, builtin ops only, sizes, errors."""

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from keras_lowrank.export import export_tflite
from keras_lowrank.export import ops_used
from keras_lowrank.export import run_tflite
from keras_lowrank.export.tflite import TOLERANCES
from keras_lowrank.layers import LowRankEmbedding

V, D, L = 2000, 64, 16


def _dan(embedding):
    ids = keras.Input((L,), dtype="int32")
    x = keras.layers.GlobalAveragePooling1D()(embedding(ids))
    x = keras.layers.Dense(16, activation="relu")(x)
    return keras.Model(ids, keras.layers.Dense(3)(x))


def _lstm(embedding):
    ids = keras.Input((L,), dtype="int32")
    return keras.Model(ids, keras.layers.Dense(3)(keras.layers.LSTM(8)(embedding(ids))))


def _full_and_low_rank(build, rank=6):
    keras.utils.set_random_seed(0)
    full = build(keras.layers.Embedding(V, D, mask_zero=True, name="embedding"))
    table = full.get_layer("embedding").embeddings.numpy()
    u, s, vt = np.linalg.svd(table, full_matrices=False)
    low_layer = LowRankEmbedding(V, D, rank, mask_zero=True, name="embedding")
    low = keras.models.clone_model(
        full, clone_function=lambda l: low_layer if l.name == "embedding" else l
    )
    low_layer.lookup.assign(u[:, :rank] * np.sqrt(s[:rank]))
    low_layer.projection.assign(np.sqrt(s[:rank])[:, None] * vt[:rank])
    return full, low


def _ids(n=8):
    rng = np.random.default_rng(3)
    ids = rng.integers(1, V, size=(n, L)).astype("int32")
    for row in range(n):
        ids[row, rng.integers(1, L + 1):] = 0
    return ids


def _no_flex(report):
    assert report.flex_ops == []
    assert not any(name.startswith("Flex") or name == "CUSTOM" for name in report.ops)


@pytest.mark.parametrize(
    "quantize",
    [None, pytest.param("dynamic", marks=pytest.mark.slow),
     pytest.param("float16", marks=pytest.mark.slow), "int8"],
)
def test_dan_parity_per_mode(tmp_path, quantize):
    _, low = _full_and_low_rank(_dan)
    report = export_tflite(
        low, tmp_path / "m.tflite", quantize=quantize,
        representative_dataset=_ids(32), probe=_ids(),
    )
    _no_flex(report)
    assert report.folded
    assert report.max_abs_difference < TOLERANCES[quantize], report
    # Independent check from the file on disk, at a different batch size.
    ids = _ids(3)
    got = run_tflite(str(tmp_path / "m.tflite"), ids)
    np.testing.assert_allclose(got, low(ids), atol=TOLERANCES[quantize])
    assert ops_used(tmp_path / "m.tflite") == report.ops


def test_lstm_exports_with_dynamic_batch(tmp_path):
    full, low = _full_and_low_rank(_lstm)
    for model in (full, low):
        report = export_tflite(model, tmp_path / "m.tflite", probe=_ids())
        _no_flex(report)
        assert report.input_shape == (None, L)
        assert report.max_abs_difference < TOLERANCES[None]
        np.testing.assert_allclose(
            run_tflite(str(tmp_path / "m.tflite"), _ids(2)), model(_ids(2)), atol=1e-4
        )


def test_low_rank_file_is_smaller_and_folding_never_grows_it(tmp_path):
    full, low = _full_and_low_rank(_dan)
    sizes = {
        name: export_tflite(model, tmp_path / f"{name}.tflite", fold=fold).bytes
        for name, model, fold in (("full", full, True), ("unfolded", low, False),
                                  ("folded", low, True))
    }
    assert sizes["folded"] <= sizes["unfolded"] < sizes["full"]


def test_quantized_low_rank_embedding_keeps_int8_factors(tmp_path):
    full, low = _full_and_low_rank(_dan)
    float_bytes = export_tflite(low, tmp_path / "f.tflite").bytes
    full_bytes = export_tflite(full, tmp_path / "full.tflite").bytes
    low.get_layer("embedding").quantize("int8")
    report = export_tflite(low, tmp_path / "q.tflite", probe=_ids())
    _no_flex(report)
    assert report.max_abs_difference < TOLERANCES[None]  # vs the quantized Keras model
    # A [V, r] float32 -> int8 (+ one float scale per row).
    assert report.bytes < float_bytes - V * 6 * 3 + V * 4 + 4096
    assert report.bytes < full_bytes / 10


@pytest.mark.slow
def test_saved_quantized_low_rank_model_exports(tmp_path):
    _, low = _full_and_low_rank(_dan)
    low.get_layer("embedding").quantize("int8")
    low.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    report = export_tflite(loaded, tmp_path / "m.tflite", probe=_ids())
    np.testing.assert_allclose(
        run_tflite(str(tmp_path / "m.tflite"), _ids()), low(_ids()), atol=1e-4
    )
    assert report.folded


@pytest.mark.slow
def test_mixed_precision_model_is_cast_to_float32(tmp_path):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        _, low = _full_and_low_rank(_dan)
    finally:
        keras.config.set_dtype_policy("float32")
    report = export_tflite(low, tmp_path / "m.tflite", probe=_ids())
    assert report.cast_to_float32
    assert report.max_abs_difference < 0.05  # bfloat16 Keras vs float32 TFLite


def test_whole_model_int8_quantization_exports(tmp_path):
    # Keras' int8 of every layer: the factors keep their int8 storage, the
    # Dense layers export as their dequantized kernels (builtin ops only).
    _, low = _full_and_low_rank(_dan)
    low.quantize("int8")
    report = export_tflite(low, tmp_path / "m.tflite")
    _no_flex(report)
    assert low.get_layer("embedding").quantization_mode == "int8"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(quantize="int2"), "quantize='int2'"),
        (dict(quantize="int8"), "representative_dataset"),
        (dict(path="model.tfl"), "path='model.tfl'"),
        (dict(batch_size=0), "batch_size=0"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    _, low = _full_and_low_rank(_dan)
    path = kwargs.pop("path", str(tmp_path / "m.tflite"))
    with pytest.raises(ValueError, match=match):
        export_tflite(low, path, **kwargs)


def _tiny_dan():
    keras.utils.set_random_seed(0)
    ids = keras.Input((8,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(50, 4, name="embedding")(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(ids, keras.layers.Dense(3, name="logits")(x))


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_file_has_a_serving_default_signature(tmp_path, quantize):
    from ai_edge_litert.interpreter import Interpreter

    model = _tiny_dan()
    ids = np.random.default_rng(0).integers(0, 50, size=(4, 8)).astype("int32")
    path = tmp_path / "m.tflite"
    export_tflite(model, path, quantize=quantize, representative_dataset=ids)
    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["token_ids"], "outputs": ["logits"]}
    }
    runner = interpreter.get_signature_runner("serving_default")
    got = runner(token_ids=ids)["logits"]
    expected = model.predict(ids, verbose=0)
    np.testing.assert_allclose(got, expected, atol=TOLERANCES[quantize])


@pytest.mark.parametrize(
    "ids, match",
    [
        (np.full((4, 8), 50), r"ids in \[0, 50\).*id 50 at index \(0, 0\)"),
        (np.full((4, 8), -1), r"received id -1"),
        (np.ones((4, 5)), "integer token ids"),
        (np.ones((4, 5), dtype="int64"), "sequence length 8"),
    ],
)
def test_representative_ids_are_checked_before_converting(tmp_path, ids, match):
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match=match):
        export_tflite(_tiny_dan(), path, quantize="int8", representative_dataset=ids)
    assert not path.exists()


def test_fixed_batch_export_checks_a_probe_of_many_rows(tmp_path):
    # With batch_size=1 the converter bakes the batch into reshapes (here
    # Flatten's): the parity check must run such a file row by row, and a
    # transformer's segment table (2 rows, first in the model) must not be
    # taken for the vocabulary when the probe's ids are checked.
    ids = keras.Input((6,), dtype="int32")
    segments = keras.layers.Embedding(2, 4, name="segment_embedding")(keras.ops.zeros_like(ids))
    tokens = keras.layers.Embedding(50, 4, name="token_embedding")(ids)
    flat = keras.layers.Flatten()(keras.layers.Add()([tokens, segments]))
    model = keras.Model(ids, keras.layers.Dense(3)(flat))
    probe = np.random.default_rng(0).integers(1, 50, size=(5, 6)).astype("int32")
    path = str(tmp_path / "fixed.tflite")
    export_tflite(model, path, batch_size=1, probe=probe)
    np.testing.assert_allclose(run_tflite(path, probe), model.predict(probe, verbose=0), atol=1e-5)


def test_missing_litert_names_the_extra(monkeypatch, tmp_path):
    import importlib.util

    import keras

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ai_edge_litert" else find_spec(name, *a))
    ids = keras.Input((4,), dtype="int32")
    model = keras.Model(ids, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(9, 3)(ids))))
    with pytest.raises(ImportError, match=r"keras-lowrank\[export\]"):
        export_tflite(model, str(tmp_path / "m.tflite"))
    assert not (tmp_path / "m.tflite").exists()
