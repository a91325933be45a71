"""TFLite signature names: valid, distinct, reported, verified on the file."""

import keyword

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from ai_edge_litert.interpreter import Interpreter

from keras_lowrank.export import export_tflite
from keras_lowrank.export import fold_projections
from keras_lowrank.export import tflite
from keras_lowrank.layers import LowRankEmbedding

V, L = 50, 8


def _tiny(input_name="token_ids", output_name="logits", embedding=None):
    keras.utils.set_random_seed(0)
    ids = keras.Input((L,), dtype="int32", name=input_name)
    embedding = embedding or keras.layers.Embedding(V, 4, name="embedding")
    x = keras.layers.GlobalAveragePooling1D(name="pooling")(embedding(ids))
    return keras.Model(ids, keras.layers.Dense(3, name=output_name)(x))


def _ids():
    return np.random.default_rng(0).integers(0, V, size=(4, L)).astype("int32")


@pytest.mark.parametrize(
    "input_name, output_name, file_input, file_output",
    [
        ("class", "logits", "class_", "logits"),  # a Python keyword
        ("ïdś", "logits", "ids", "logits"),  # non-ASCII
        ("a-b", "a_b", "a_b", "a_b_1"),  # the same name once sanitized
    ],
)
def test_signature_names_are_valid_and_distinct(
    tmp_path, input_name, output_name, file_input, file_output
):
    model = _tiny(input_name, output_name)
    path = tmp_path / "m.tflite"
    report = export_tflite(model, path)
    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": [file_input], "outputs": [file_output]}
    }
    assert report.signature == {
        "inputs": {input_name: file_input},
        "outputs": {output_name: file_output},
    }
    assert f"{input_name} -> {file_input}" in str(report)
    ids = _ids()
    got = interpreter.get_signature_runner("serving_default")(**{file_input: ids})
    np.testing.assert_allclose(
        got[file_output], model.predict(ids, verbose=0), atol=1e-5
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("token_ids", "token_ids"),
        ("class", "class_"),
        ("None", "None_"),
        ("ïdś", "ids"),
        ("a-b c:0", "a_b_c_0"),
        ("1st", "arg_1st"),
        ("_ids", "arg__ids"),
        ("标记", ""),
    ],
)
def test_signature_name_rules(name, expected):
    got = tflite._signature_name(name)
    assert got == expected
    if got:
        assert got.isascii() and got.isidentifier() and not keyword.iskeyword(got)
        assert not got.startswith("_")


def test_a_file_without_the_expected_signature_is_not_written(tmp_path, monkeypatch):
    # A keyword passed to the converter unchanged makes it write a file with
    # no SignatureDef, silently: the check on the file must catch it.
    monkeypatch.setattr(
        tflite,
        "_signature_names",
        lambda model, input_name=None: {"inputs": {"class": "class"}, "outputs": {"logits": "logits"}},
    )
    path = tmp_path / "m.tflite"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="no 'serving_default' signature"):
        export_tflite(_tiny("class"), path)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_saved_model_route_uses_the_signature_names():
    # The route of the JAX backend, through Keras' SavedModel export; it runs
    # on TensorFlow too.
    import tensorflow as tf

    flatbuffer = tflite._convert_from_jax(
        _tiny("class"), (None, L), None, None, [], tf, names=("class_", "logits")
    )
    assert Interpreter(model_content=flatbuffer).get_signature_list() == {
        "serving_default": {"inputs": ["class_"], "outputs": ["logits"]}
    }


def _int4_low_rank(name="embedding"):
    layer = LowRankEmbedding(V, 8, 2, name=name)
    layer.build()
    return layer


def test_int4_report_names_the_consumer(tmp_path):
    model = _tiny(embedding=_int4_low_rank())
    model.get_layer("embedding").quantize("int4")
    report = export_tflite(model, tmp_path / "m.tflite")
    text = str(report)
    assert (
        "kept factorized: embedding before pooling "
        "(int4 factors are not folded: unpacking them would double the table)"
    ) in text
    assert "weights unchanged" in text
    assert "(quantize=none)" in text and f"input (dynamic, {L})" in text
    assert "None" not in text
    assert report.fold_report.kept[0].consumer == "pooling"


def test_int4_report_without_a_consumer():
    model = keras.Sequential(
        [keras.Input((L,), dtype="int32"), _int4_low_rank("lookup_only")]
    )
    model.layers[0].quantize("int4")
    _, report = fold_projections(model)
    assert [(r.embedding, r.consumer) for r in report.records] == [("lookup_only", None)]
    assert str(report).splitlines()[1] == (
        "  kept factorized: lookup_only (int4 factors are not folded: "
        "unpacking them would double the table)"
    )


def test_kept_and_folded_lines_read_as_sentences():
    ids = keras.Input((L,), dtype="int32")
    layer = LowRankEmbedding(V, 8, 2, name="embedding")
    layer.build()
    x = layer(ids)
    a = keras.layers.GlobalAveragePooling1D()(
        keras.layers.LayerNormalization(name="norm")(x)
    )
    b = keras.layers.LSTM(4, name="lstm")(x)
    model = keras.Model(ids, keras.layers.Concatenate()([a, b]))
    _, report = fold_projections(model)
    lines = str(report).splitlines()
    assert "  folded: embedding into lstm (recurrent)" in lines
    assert (
        "  kept factorized: embedding before norm (LayerNormalization is not "
        "a linear consumer the projection folds into)"
    ) in lines
    assert "None" not in str(report)
