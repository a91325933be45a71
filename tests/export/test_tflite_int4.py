"""`export_tflite(quantize="int4")`: int4 weights written by AI Edge Quantizer.

References: the Keras kernels themselves (each int4 value times its
channel's scale must give the kernel back within half a step), the float32
file's size less what int4 saves, and the Keras model's outputs.
"""

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("ai_edge_quantizer")

from keras_lowrank.export import export_tflite
from keras_lowrank.export import run_tflite
from keras_lowrank.export.tflite import TOLERANCES
from keras_lowrank.export.tflite import make_interpreter

V, D, L, HIDDEN, CLASSES = 500, 32, 12, 64, 5


def _dan(vocabulary=V):
    keras.utils.set_random_seed(0)
    ids = keras.Input((L,), dtype="int32")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(vocabulary, D, mask_zero=True)(ids))
    x = keras.layers.Dense(HIDDEN, activation="relu", name="hidden")(x)
    return keras.Model(ids, keras.layers.Dense(CLASSES, name="logits")(x))


def _ids(n, seed=3):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, V, size=(n, L)).astype("int32")
    for row in range(n):
        ids[row, rng.integers(1, L + 1):] = 0
    return ids


def test_int4_file_stores_each_dense_kernel_in_int4_per_output_channel(tmp_path):
    model = _dan()
    report = export_tflite(model, tmp_path / "m.tflite", quantize="int4", probe=_ids(8))
    assert report.quantize == "int4" and report.flex_ops == []
    assert report.max_abs_difference < TOLERANCES["int4"]
    np.testing.assert_allclose(run_tflite(str(tmp_path / "m.tflite"), _ids(3, seed=5)), model(_ids(3, seed=5)),
                               atol=TOLERANCES["int4"])
    interpreter = make_interpreter(str(tmp_path / "m.tflite"))
    quantized = {}
    for tensor in interpreter.get_tensor_details():
        scales = tensor["quantization_parameters"]["scales"]
        if len(tensor["shape"]) == 2 and len(scales) > 1:
            quantized[tuple(tensor["shape"])] = (interpreter.get_tensor(tensor["index"]), scales)
    for name in ("hidden", "logits"):
        kernel = keras.ops.convert_to_numpy(model.get_layer(name).kernel).T  # TFLite: (out, in)
        values, scales = quantized[kernel.shape]
        assert values.min() >= -8 and values.max() <= 7  # int4's range
        assert len(scales) == kernel.shape[0]  # one scale per output channel
        error = np.abs(values * scales[:, None] - kernel) / scales[:, None]
        # Rounded to the nearest step, except at the positive end: the scale
        # spans 8 steps of the largest magnitude, and +8 clips to 7.
        assert error.max() <= 1.0 + 1e-5
        assert np.all((error <= 0.5 + 1e-5) | (values == 7))


def test_int4_file_saves_seven_eighths_of_the_dense_kernels(tmp_path):
    model = _dan()
    plain = export_tflite(model, tmp_path / "float.tflite", probe=_ids(4))
    int4 = export_tflite(model, tmp_path / "int4.tflite", quantize="int4", probe=_ids(4))
    kernel_bytes = 4 * (D * HIDDEN + HIDDEN * CLASSES)
    # 4 bytes a weight -> half a byte, plus a float32 scale per channel (and
    # a little flatbuffer bookkeeping): most of 7/8 of the kernels is saved.
    saved = plain.bytes - int4.bytes
    assert 0.8 * kernel_bytes * 7 / 8 < saved <= kernel_bytes * 7 / 8


def test_missing_quantizer_names_the_extra(monkeypatch, tmp_path):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ai_edge_quantizer" else find_spec(name, *a))
    with pytest.raises(ImportError, match=r"ai-edge-quantizer.*keras-lowrank\[export\]"):
        export_tflite(_dan(), str(tmp_path / "m.tflite"), quantize="int4")
    assert not (tmp_path / "m.tflite").exists()


def test_metadata_goes_into_an_int4_file_whose_buffers_follow_the_flatbuffer(tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    from keras_lowrank.export import metadata

    # Over 256 KB of weights (a 2,500 x 32 float32 table), AI Edge Quantizer
    # appends the buffers after the flatbuffer: the case under test.
    model = _dan(vocabulary=2_500)
    export_tflite(model, tmp_path / "m.tflite", quantize="int4", probe=_ids(4))
    written = (tmp_path / "m.tflite").read_bytes()
    packed = schema.ModelT.InitFromPackedBuf(bytearray(written), 0)
    assert any(buffer.offset > 1 for buffer in packed.buffers)
    tagged = metadata.with_metadata(written, "settings", b'{"a": 1}')
    assert metadata.read_metadata(tagged, "settings") == b'{"a": 1}'
    ids = _ids(5, seed=7)
    np.testing.assert_array_equal(run_tflite(tagged, ids), run_tflite(written, ids))
