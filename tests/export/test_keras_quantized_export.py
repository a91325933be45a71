"""LiteRT export of layers quantized by Keras' `quantize("int8")` (e.g. `compress(other_layers=...)`)."""

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from keras_lowrank.compression.other_layers import quantize_other_layers
from keras_lowrank.export import export_tflite
from keras_lowrank.export import run_tflite
from keras_lowrank.export.tflite import TOLERANCES

V, L = 300, 10


def _ids(n=8):
    return np.random.default_rng(1).integers(1, V, size=(n, L)).astype("int32")


def _int8_per_channel(kernel, reduced_axes):
    """Keras' int8 rule by hand: one abs-max scale per output channel, codes rounded; back to float."""
    peak = np.max(np.abs(kernel), axis=reduced_axes, keepdims=True)
    scale = 127.0 / np.where(peak > 0, peak, 1.0)
    return np.clip(np.round(kernel * scale), -127, 127) / scale


def _by_hand(model, reduced, rule):
    """The reference: a float copy of `model` with each named kernel put through Keras' `rule` by hand."""
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    for name, axes in reduced.items():
        layer = reference.get_layer(name)
        layer.kernel.assign(rule(keras.ops.convert_to_numpy(layer.kernel), axes))
    return reference


def _dan():
    keras.utils.set_random_seed(0)
    ids = keras.Input((L,), dtype="int32")
    x = keras.layers.Embedding(V, 16, name="embedding")(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(24, activation="relu", name="hidden")(x)
    return keras.Model(ids, keras.layers.Dense(3, name="logits")(x))


def _attention_like():
    # EinsumDense with a multi-axis output, as a transformer's projections.
    keras.utils.set_random_seed(0)
    ids = keras.Input((L,), dtype="int32")
    x = keras.layers.Embedding(V, 8, name="embedding")(ids)
    x = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 4), bias_axes="de", name="heads")(x)
    x = keras.layers.EinsumDense("abcd,cde->abe", output_shape=(None, 6), bias_axes="e", name="merge")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(ids, keras.layers.Dense(3, name="logits")(x))


@pytest.mark.parametrize(
    "build, reduced",
    [(_dan, {"hidden": (0,), "logits": (0,)}),
     (_attention_like, {"heads": (0,), "merge": (0, 1), "logits": (0,)})],
)
def test_keras_int8_layers_export_as_their_dequantized_weights(tmp_path, build, reduced):
    model = build()
    reference = _by_hand(model, reduced, _int8_per_channel)
    assert sorted(quantize_other_layers(model, "int8")) == sorted(reduced)
    ids = _ids()
    report = export_tflite(model, tmp_path / "m.tflite", probe=ids)
    got = run_tflite(str(tmp_path / "m.tflite"), ids)
    np.testing.assert_allclose(got, reference.predict(ids, verbose=0), atol=1e-5)
    assert report.flex_ops == []
    # The Keras model itself is unchanged (still int8).
    assert model.get_layer("logits").quantization_mode == "int8"


def test_dynamic_range_file_stores_the_int8_layers_in_int8(tmp_path):
    model = _dan()
    float_report = export_tflite(model, tmp_path / "float.tflite", quantize="dynamic")
    quantize_other_layers(model, "int8")
    report = export_tflite(model, tmp_path / "int8.tflite", quantize="dynamic")
    # Same weights per channel as LiteRT's own dynamic range: the same file size.
    assert abs(report.bytes - float_report.bytes) < 1024


def _int4_per_channel(kernel, reduced_axes):
    """Keras' int4 rule per output channel by hand: abs max to 7, codes rounded into [-8, 7]; back to float."""
    scale = 7.0 / (np.max(np.abs(kernel), axis=reduced_axes, keepdims=True) + keras.config.epsilon())
    return np.clip(np.round(kernel * scale), -8, 7) / scale


def _quantize_int4(model, names, block_size):
    from keras.quantizers import Int4QuantizationConfig

    for name in names:
        model.get_layer(name).quantize("int4", config=Int4QuantizationConfig(block_size=block_size))


@pytest.mark.parametrize(
    "build, reduced",
    [(_dan, {"hidden": (0,), "logits": (0,)}),
     (_attention_like, {"heads": (0,), "merge": (0, 1), "logits": (0,)})],
)
def test_keras_int4_layers_per_channel_export_as_their_dequantized_weights(tmp_path, build, reduced):
    model = build()
    reference = _by_hand(model, reduced, _int4_per_channel)
    _quantize_int4(model, reduced, block_size=-1)
    ids = _ids()
    report = export_tflite(model, tmp_path / "m.tflite", probe=ids)
    np.testing.assert_allclose(run_tflite(str(tmp_path / "m.tflite"), ids), reference.predict(ids, verbose=0),
                               atol=1e-5)
    assert report.flex_ops == []
    assert model.get_layer("logits").quantization_mode == "int4"


@pytest.mark.parametrize("build, names", [(_dan, ("hidden", "logits")), (_attention_like, ("heads", "merge"))])
def test_keras_int4_layers_in_blocks_export_as_keras_computes_them(tmp_path, build, names):
    # Keras' sub-channel layout: a scale and a zero point per block of 4 summed inputs.
    model = build()
    _quantize_int4(model, names, block_size=4)
    assert all(model.get_layer(name).kernel_zero is not None for name in names)
    ids = _ids()
    export_tflite(model, tmp_path / "m.tflite", probe=ids)
    np.testing.assert_allclose(run_tflite(str(tmp_path / "m.tflite"), ids), model.predict(ids, verbose=0),
                               atol=1e-5)


def test_compress_whole_model_int4_result_exports_to_an_int4_file(tmp_path):
    pytest.importorskip("ai_edge_quantizer")
    model = _dan()
    assert sorted(quantize_other_layers(model, "int4")) == ["hidden", "logits"]
    ids = _ids()
    float_report = export_tflite(model, tmp_path / "float.tflite", probe=ids)
    report = export_tflite(model, tmp_path / "int4.tflite", quantize="int4", probe=ids)
    assert report.flex_ops == []
    # Each kernel written again in int4 from Keras' dequantized one: 7/8 of its float32 bytes go.
    kernel_bytes = 4 * (16 * 24 + 24 * 3)
    assert 0.8 * kernel_bytes * 7 / 8 < float_report.bytes - report.bytes <= kernel_bytes * 7 / 8
    np.testing.assert_allclose(run_tflite(str(tmp_path / "int4.tflite"), ids), model.predict(ids, verbose=0),
                               atol=TOLERANCES["int4"])


def test_keras_quantized_layers_without_a_builtin_form_are_refused_with_what_to_do(tmp_path):
    model = _dan()
    model.get_layer("hidden").quantize("float8")
    with pytest.raises(ValueError, match=r"no builtin TFLite form: hidden \(Dense, float8\).*quantize='dynamic'"):
        export_tflite(model, tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()


def test_quantized_layers_nested_in_an_inner_model_export(tmp_path):
    inner = _dan()
    reference = _by_hand(inner, {"hidden": (0,), "logits": (0,)}, _int8_per_channel)
    ids = keras.Input((L,), dtype="int32")
    outer = keras.Model(ids, inner(ids))
    assert sorted(quantize_other_layers(outer, "int8")) == ["hidden", "logits"]
    probe = _ids()
    export_tflite(outer, tmp_path / "m.tflite", probe=probe)
    np.testing.assert_allclose(run_tflite(str(tmp_path / "m.tflite"), probe), reference.predict(probe, verbose=0),
                               atol=1e-5)
    # The caller's model keeps its int8 layers.
    assert inner.get_layer("hidden").quantization_mode == "int8"


@pytest.mark.parametrize("block_size", [None, -1])
@pytest.mark.parametrize("pruned", [True, False])
def test_a_keras_int4_table_keeps_half_a_byte_a_number_in_the_file(tmp_path, block_size, pruned):
    from keras.quantizers import Int4QuantizationConfig

    from keras_lowrank.compression import prune_vocabulary
    from keras_lowrank.export.tflite import make_interpreter

    keras.utils.set_random_seed(0)
    V, D, L, ROWS = 3000, 256, 12, 1000
    ids_in = keras.Input((L,), dtype="int32")
    x = keras.layers.Embedding(V, D, mask_zero=True, name="embedding")(ids_in)
    model = keras.Model(ids_in, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling1D()(x)))
    if pruned:
        model = prune_vocabulary(model, ROWS, counts=np.arange(V) % 17)
    table = model.get_layer("embedding")
    table = getattr(table, "embedding", table)
    # Keras' default is sub-channel (blocks of 128 with zero points); -1 is per channel.
    table.quantize("int4", config=None if block_size is None else Int4QuantizationConfig(block_size=block_size))
    rows = ROWS if pruned else V
    ids = np.random.default_rng(1).integers(0, V, (6, L)).astype("int32")
    ids[:, 8:] = 0  # padding, masked out of the mean
    path = str(tmp_path / "m.tflite")
    report = export_tflite(model, path, probe=ids)
    assert report.max_abs_difference < 1e-5
    np.testing.assert_allclose(run_tflite(path, ids[:2]), model(ids[:2]), atol=1e-5)
    shapes = {tuple(t["shape"]) for t in make_interpreter(path).get_tensor_details()
              if t["dtype"] == np.int8 and len(t["shape"]) == 2}
    # The packed codes, never the unpacked int8 table Keras' own lookup folds into.
    assert (rows, D // 2) in shapes and (rows, D) not in shapes


def test_an_int4_reversible_table_is_looked_up_packed_and_keeps_its_logits():
    from keras_lowrank.export.keras_quantized import PackedInt4Lookup

    keras.utils.set_random_seed(0)
    table = keras.layers.ReversibleEmbedding(300, 384, tie_weights=False)
    table.build()
    table.quantize("int4")
    lookup = PackedInt4Lookup(table)
    ids = np.random.default_rng(0).integers(0, 300, (3, 5))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(lookup(ids)), keras.ops.convert_to_numpy(table(ids)))
    hidden = np.random.default_rng(1).normal(size=(2, 384)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(lookup(hidden, reverse=True)),
                                  keras.ops.convert_to_numpy(table(hidden, reverse=True)))


@pytest.mark.parametrize("mode, block_size", [("int8", None), ("int4", -1), ("int4", 4)])
@pytest.mark.parametrize(
    "build, reduced",
    [(_dan, {"hidden": (0,), "logits": (0,)}), (_attention_like, {"heads": (0,), "merge": (0, 1)})],
)
def test_keras_quantized_layers_with_lora_export_as_keras_computes_them(tmp_path, mode, block_size, build, reduced):
    # Keras' QLoRA: quantized kernels, then a float low-rank update trained on top.
    from keras.quantizers import Int4QuantizationConfig

    model = build()
    kernels = {name: keras.ops.convert_to_numpy(model.get_layer(name).kernel) for name in reduced}
    for name in reduced:
        layer = model.get_layer(name)
        layer.quantize(mode, config=Int4QuantizationConfig(block_size=block_size) if mode == "int4" else None)
        layer.enable_lora(2)
        # A trained update (Keras starts B at zero, which would hide it).
        layer.lora_kernel_b.assign(np.random.default_rng(3).normal(0, 0.3, layer.lora_kernel_b.shape))
    ids = _ids()
    report = export_tflite(model, tmp_path / "m.tflite", probe=ids)
    assert report.flex_ops == []
    if mode == "int8":
        # Keras' int8 product also quantizes its inputs, which the file does
        # not: the reference is the float model (built again, same seed)
        # holding Keras' int8 kernels by hand with the update merged
        # (`lora_alpha` defaults to the rank: a scale of 1).
        reference = build()
        for name, axes in reduced.items():
            layer = model.get_layer(name)
            update = keras.ops.convert_to_numpy(layer.lora_kernel_a) @ keras.ops.convert_to_numpy(layer.lora_kernel_b)
            reference.get_layer(name).kernel.assign(_int8_per_channel(kernels[name], axes) + update)
        expected = reference.predict(ids, verbose=0)
    else:
        expected = model.predict(ids, verbose=0)
    np.testing.assert_allclose(run_tflite(str(tmp_path / "m.tflite"), ids), expected, atol=1e-5)
    assert all(model.get_layer(name).lora_enabled for name in reduced)
