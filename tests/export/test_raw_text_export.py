"""A model holding its TextVectorization exports to LiteRT and runs from raw strings.

References: the Keras model's own outputs on the texts, and the
`TextVectorization` layer's own ids for the tokenizer.
"""

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
tf = pytest.importorskip("tensorflow")

import keras_lowrank  # noqa: E402
from keras_lowrank.export import TextRunner  # noqa: E402
from keras_lowrank.export import export_tflite  # noqa: E402
from keras_lowrank.export import read_tokenizer  # noqa: E402
from keras_lowrank.export import run_tflite  # noqa: E402
from keras_lowrank.export.metadata import read_metadata  # noqa: E402
from keras_lowrank.export.metadata import with_metadata  # noqa: E402

CORPUS = [
    "Book a table for two at the Italian place tonight",
    "play some jazz music in the kitchen",
    "what's the weather like in Paris tomorrow?",
    "add 'Blue in Green' to my playlist, please!",
    "rate this book five stars",
    "find the movie schedule for the Odeon cinema",
    "Is it going to rain in New-York city?",
    "play the latest album by Daft Punk",
] * 3
# Case, punctuation, unknown words, odd whitespace, non-ASCII letters.
TEXTS = [
    "PLAY some Jazz!!",
    "book a table, for two... at l'Italien",
    "\tweather   in paris\n tomorrow",
    "zxqv blorp",
    "",
    "rate THIS book 5 stars -- Énorme café",
    "play\u00a0jazz now",
    "find the movie schedule for the odeon cinema and the weather in paris and a table",
]


def _classifier(input_shape=(), sequence_length=12, max_tokens=60, **vectorization):
    vectorizer = keras.layers.TextVectorization(
        max_tokens=max_tokens, output_sequence_length=sequence_length, **vectorization
    )
    vectorizer.adapt(CORPUS)
    text = keras.Input(shape=input_shape, dtype="string", name="text")
    embedded = keras.layers.Embedding(vectorizer.vocabulary_size(), 8, mask_zero=True)(vectorizer(text))
    pooled = keras.layers.GlobalAveragePooling1D()(embedded)
    hidden = keras.layers.Dense(6, activation="relu")(pooled)
    return keras.Model(text, keras.layers.Dense(3, name="intent")(hidden))


def _keras_outputs(model, texts):
    tensor = tf.constant(texts)
    if tuple(model.inputs[0].shape[1:]) == (1,):
        tensor = tensor[:, None]
    return keras.ops.convert_to_numpy(model(tensor))


@pytest.mark.parametrize("input_shape", [(), (1,)])
def test_raw_text_model_runs_from_strings_as_keras_does(tmp_path, input_shape):
    model = _classifier(input_shape)
    path = tmp_path / "intent.tflite"
    report = export_tflite(model, str(path))
    assert report.flex_ops == []
    assert report.signature["inputs"] == {"token_ids": "token_ids"}
    assert report.tokenizer["vocabulary_size"] == model.layers[1].vocabulary_size()
    # The report counts the file's bytes that are the tokenizer, as read back from the file.
    carried = read_metadata(str(path), "keras_lowrank.text_vectorization")
    assert report.tokenizer_bytes == len(carried) > 0
    assert f"{len(carried):,} bytes" in str(report)
    runner = TextRunner(str(path))
    got = runner(TEXTS)
    expected = _keras_outputs(model, TEXTS)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    # The file's input is the layer's ids.
    np.testing.assert_array_equal(runner.tokenize(TEXTS), model.layers[1](tf.constant(TEXTS)).numpy())


def test_runner_batch_of_one_matches_keras(tmp_path):
    model = _classifier()
    path = tmp_path / "m.tflite"
    export_tflite(model, str(path), batch_size=1)
    runner = TextRunner(path.read_bytes())
    for text in TEXTS[:3]:
        np.testing.assert_allclose(runner([text]), _keras_outputs(model, [text]), atol=1e-5)


def test_pruned_raw_text_model_carries_its_pruned_vocabulary(tmp_path):
    model = _classifier()
    small = keras_lowrank.prune_vocabulary(model, 20)
    path = tmp_path / "small.tflite"
    export_tflite(small, str(path))
    tokenizer = read_tokenizer(str(path))
    assert len(tokenizer.vocabulary) == 20
    assert list(tokenizer.vocabulary) == small.layers[1].get_vocabulary()
    np.testing.assert_allclose(TextRunner(str(path))(TEXTS), _keras_outputs(small, TEXTS), atol=1e-5)


def test_unfixed_length_pads_each_batch_to_its_longest_text(tmp_path):
    model = _classifier(sequence_length=None)
    path = tmp_path / "m.tflite"
    report = export_tflite(model, str(path))
    assert report.input_shape == (None, None)
    runner = TextRunner(str(path))
    assert runner.tokenize(TEXTS).shape[1] == max(len(t.split()) for t in TEXTS)
    np.testing.assert_allclose(runner(TEXTS), _keras_outputs(model, TEXTS), atol=1e-5)
    with pytest.raises(ValueError, match="output_sequence_length"):
        export_tflite(model, str(tmp_path / "n.tflite"), sequence_length=12)


def test_dynamic_range_file_keeps_the_class_of_every_text(tmp_path):
    model = _classifier()
    path = tmp_path / "m.tflite"
    report = export_tflite(model, str(path), quantize="dynamic", probe=TEXTS)
    assert report.probe_shape[0] == len(TEXTS)
    got = TextRunner(str(path))(TEXTS)
    np.testing.assert_allclose(got, _keras_outputs(model, TEXTS), atol=0.1)


def test_integer_quantization_calibrates_on_texts(tmp_path):
    model = _classifier()
    path = tmp_path / "m.tflite"
    report = export_tflite(model, str(path), quantize="int8", representative_dataset=CORPUS)
    assert report.flex_ops == []
    # Not the empty text: its all-padding ids make the masked mean divide by
    # a zero count, which TFLite's integer DIV kernel refuses.
    texts = [text for text in TEXTS if text]
    assert TextRunner(str(path))(texts).shape == (len(texts), 3)


def test_runner_refuses_a_file_of_ids(tmp_path):
    ids = keras.Input((5,), dtype="int32")
    model = keras.Model(ids, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(10, 3)(ids))))
    path = tmp_path / "ids.tflite"
    export_tflite(model, str(path))
    assert read_tokenizer(str(path)) is None
    with pytest.raises(ValueError, match="token ids"):
        TextRunner(str(path))


def test_a_shared_vectorization_layer_is_found_in_each_model(tmp_path):
    model = _classifier()
    vectorizer = model.layers[1]
    other_input = keras.Input(shape=(), dtype="string")
    embedded = model.layers[2](vectorizer(other_input))
    other = keras.Model(other_input, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(embedded)))
    for m, name in ((model, "a"), (other, "b")):
        export_tflite(m, str(tmp_path / f"{name}.tflite"))
        np.testing.assert_allclose(
            TextRunner(str(tmp_path / f"{name}.tflite"))(TEXTS), _keras_outputs(m, TEXTS), atol=1e-5
        )


def test_models_that_cannot_export_from_text_say_why_in_one_line(tmp_path):
    # Tokens fed to a StringLookup: no TextVectorization on the string input.
    tokens = keras.Input(shape=(4,), dtype="string")
    lookup = keras.layers.StringLookup(vocabulary=["a", "b"])
    model = keras.Model(tokens, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(4, 2)(lookup(tokens)))))
    with pytest.raises(ValueError, match="one TextVectorization") as error:
        export_tflite(model, str(tmp_path / "a.tflite"))
    assert "\n" not in str(error.value)

    # A custom standardize callable cannot be written with the file.
    model = _classifier(standardize=lambda t: tf.strings.lower(t))
    with pytest.raises(ValueError, match="custom `standardize`"):
        export_tflite(model, str(tmp_path / "b.tflite"))
    assert not list(tmp_path.iterdir())


def test_metadata_entry_round_trips_and_tensor_buffers_stay_aligned(tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    ids = keras.Input((7,), dtype="int32")
    model = keras.Model(ids, keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Embedding(50, 5)(ids))))
    path = tmp_path / "m.tflite"
    export_tflite(model, str(path))
    original = path.read_bytes()
    content = with_metadata(original, "note", "héllo".encode())
    content = with_metadata(content, "note", b"replaced")
    assert read_metadata(content, "note") == b"replaced"
    assert read_metadata(content, "absent") is None
    root = schema.Model.GetRootAsModel(content, 0)
    assert sum(root.Metadata(i).Name() == b"note" for i in range(root.MetadataLength())) == 1
    for i in range(root.BuffersLength()):
        buffer = root.Buffers(i)
        if buffer.DataLength():
            start = buffer._tab.Vector(buffer._tab.Offset(4))
            assert start % 16 == 0
    probe = np.random.default_rng(0).integers(0, 50, size=(4, 7)).astype("int32")
    np.testing.assert_array_equal(run_tflite(content, probe), run_tflite(original, probe))
