"""The command line on models that take raw text (they hold their TextVectorization).

`compress --size` reads `--train`/`--validation` CSV/TSV files and must feed
their texts in a form Keras accepts for the model's string input, whatever
its shape (`()` or `(1,)`); a numpy object or `<U` array is refused by Keras
3 on TensorFlow ("Invalid dtype: object"). `--fine-tune` takes a `.npz` of
strings the same way. `inspect` lists the table; `export` writes the
file of its token ids with the tokenizer inside, which `TextRunner` runs
from the same strings.
"""

import csv
import json

import numpy as np
import pytest

from tests.cli.conftest import assert_user_error, run_cli

MAX_TOKENS, DIM, CLASSES, SEQUENCE = 40, 16, 2, 6
POSITIVE = ["good", "great", "fine", "nice", "lovely", "superb", "brilliant", "charming", "warm"]
NEGATIVE = ["bad", "awful", "poor", "dull", "terrible", "boring", "weak", "bland", "clumsy"]
NEUTRAL = [
    "movie", "film", "plot", "actor", "story", "scene", "cast", "script", "music", "ending",
    "director", "camera", "dialogue", "pace", "score", "hero", "villain", "tone", "set", "light",
    "screen", "studio", "sequel", "drama", "comedy",
]


def _texts(count, seed):
    """Short reviews and their labels (1 when a positive word wins)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(count):
        label = i % CLASSES
        words = list(rng.choice(NEUTRAL, 3)) + list(rng.choice(POSITIVE if label else NEGATIVE, 2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    # A quoted CSV field holding the delimiter.
    texts[0] = texts[0].replace(" ", ", ", 1)
    return texts, np.array(labels)


def _write(path, texts, labels):
    delimiter = "\t" if str(path).endswith(".tsv") else ","
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels.tolist()))


def _strings(texts, shape):
    """Texts as the model's string input of `shape` takes them."""
    import tensorflow as tf

    tensor = tf.constant(texts)
    return tensor if shape == () else tensor[:, None]


@pytest.fixture(scope="module", params=[(), (1,)], ids=["shape()", "shape(1,)"])
def raw_text(request, tmp_path_factory):
    """A trained raw-text classifier saved as .keras, with CSV/TSV/NPZ data."""
    import keras

    shape = request.param
    root = tmp_path_factory.mktemp("raw_text")
    keras.utils.set_random_seed(0)
    texts, labels = _texts(48, seed=0)
    vectorizer = keras.layers.TextVectorization(
        max_tokens=MAX_TOKENS, output_sequence_length=SEQUENCE, name="vectorize"
    )
    vectorizer.adapt(texts)
    inputs = keras.Input(shape=shape, dtype="string", name="text")
    x = keras.layers.Embedding(vectorizer.vocabulary_size(), DIM, name="embedding")(vectorizer(inputs))
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(8, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(_strings(texts, shape), labels, epochs=1, batch_size=16, verbose=0)
    paths = {"model": root / "model.keras", "train": root / "train.csv", "dev": root / "dev.tsv",
             "npz": root / "texts.npz", "ids": root / "ids.npz"}
    model.save(paths["model"])
    _write(paths["train"], texts, labels)
    dev_texts, dev_labels = _texts(16, seed=1)
    _write(paths["dev"], dev_texts, dev_labels)
    # `<U` arrays, as np.savez stores strings.
    np.savez(paths["npz"], x=np.array(texts), y=labels, x_val=np.array(dev_texts), y_val=dev_labels)
    np.savez(paths["ids"], x=np.ones((8, SEQUENCE), "int32"), y=np.zeros(8, "int64"))
    return {
        "shape": shape, "vocabulary": vectorizer.vocabulary_size(), "root": root,
        "queries": [dev_texts[0], dev_texts[1], "good great film", "awful dull plot", "zzz unseen words"],
        **{key: str(value) for key, value in paths.items()},
    }


def _load(path):
    import keras

    import keras_lowrank  # noqa: F401  (registers the package's layers)

    return keras.saving.load_model(path)


def _check_reads_strings(model, data):
    """The model still takes strings of the input's shape and its outputs depend on them."""
    assert str(model.inputs[0].dtype) == "string"
    assert tuple(model.inputs[0].shape[1:]) == data["shape"]
    outputs = model.predict(_strings(data["queries"], data["shape"]), verbose=0)
    assert outputs.shape == (len(data["queries"]), CLASSES)
    assert np.all(np.isfinite(outputs))
    # Different texts reach different rows: the outputs are not one constant row.
    assert np.ptp(outputs, axis=0).max() > 1e-6


def test_vocabulary_and_fixture_are_what_the_tests_assume(raw_text):
    assert raw_text["vocabulary"] == MAX_TOKENS


def test_budget_compress_reads_csv_and_tsv_texts(raw_text, capsys, tmp_path):
    from keras_lowrank.compression import embedding_bytes

    output, report = tmp_path / "small.keras", tmp_path / "report.json"
    code, out, err = run_cli(
        capsys, "compress", raw_text["model"], output, "--size", "30%",
        "--train", raw_text["train"], "--validation", raw_text["dev"],
        "--epochs", 1, "--candidates", 1, "--batch-size", 16, "--json", report,
    )
    assert code == 0, err
    assert "Invalid dtype" not in err
    assert f"wrote {output}" in out
    saved = json.loads(report.read_text())
    assert saved["budget_bytes"] == int(0.3 * 4 * MAX_TOKENS * DIM)
    small = _load(output)
    assert embedding_bytes(small) == saved["embedding_bytes"] <= saved["budget_bytes"]
    _check_reads_strings(small, raw_text)


def test_rank_fine_tune_reads_a_npz_of_strings(raw_text, capsys, tmp_path):
    output = tmp_path / "factorized.keras"
    code, out, err = run_cli(
        capsys, "compress", raw_text["model"], output, "--rank", 4,
        "--fine-tune", raw_text["npz"], "--epochs", 1, "--batch-size", 16,
    )
    assert code == 0, err
    assert "val_loss" in out and f"wrote {output}" in out  # Fine-tuned with validation.
    small = _load(output)
    assert type(small.get_layer("embedding")).__name__ == "LowRankEmbedding"
    assert int(small.get_layer("embedding").rank) == 4
    _check_reads_strings(small, raw_text)


def test_ids_for_a_raw_text_model_are_a_one_line_error(raw_text, capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "compress", raw_text["model"], tmp_path / "o.keras", "--size", "30%",
        "--train", raw_text["ids"], "--validation", raw_text["dev"], "--epochs", 1,
    )
    assert_user_error(code, err, f"--train {raw_text['ids']}", "takes raw text", "int32")
    assert "accuracy" not in out  # Refused before any evaluation or training.
    assert not (tmp_path / "o.keras").exists()


def test_texts_for_an_id_model_are_a_one_line_error(raw_text, files, capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "compress", files["model"], tmp_path / "o.keras", "--size", "30%",
        "--train", raw_text["train"], "--validation", raw_text["dev"], "--epochs", 1,
    )
    assert_user_error(code, err, f"--train {raw_text['train']}", "holds texts", "integer token ids")
    assert "accuracy" not in out  # Refused before any evaluation or training.


def test_inspect_lists_the_table_of_a_raw_text_model(raw_text, capsys, tmp_path):
    path = tmp_path / "inspect.json"
    code, out, err = run_cli(capsys, "inspect", raw_text["model"], "--json", path)
    assert code == 0, err
    assert "embedding" in out and f"{MAX_TOKENS}x{DIM}" in out and "0.50" in out
    (record,) = json.loads(path.read_text())
    assert (record["layer"], record["input_dim"], record["output_dim"]) == ("embedding", MAX_TOKENS, DIM)
    assert len(record["singular_values"]) == DIM
    table = _load(raw_text["model"]).get_layer("embedding").get_weights()[0]
    reference = np.linalg.svd(table.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(record["singular_values"], reference, rtol=1e-4, atol=1e-6)


def test_export_writes_a_file_that_runs_from_raw_text(raw_text, capsys, tmp_path):
    from keras_lowrank.export import TextRunner

    output = tmp_path / "model.tflite"
    report = tmp_path / "report.json"
    code, out, err = run_cli(capsys, "export", raw_text["model"], output, "--json", report)
    assert code == 0, err
    assert "raw text: vocabulary of" in out
    assert json.loads(report.read_text())["tokenizer"]["vocabulary_size"] == raw_text["vocabulary"]
    model = _load(raw_text["model"])
    expected = model.predict(_strings(raw_text["queries"], raw_text["shape"]), verbose=0)
    np.testing.assert_allclose(TextRunner(str(output))(raw_text["queries"]), expected, atol=1e-5)


def test_export_calibrates_a_raw_text_model_on_csv_texts(raw_text, capsys, tmp_path):
    output = tmp_path / "model.tflite"
    code, out, err = run_cli(
        capsys, "export", raw_text["model"], output, "--quantize", "int8", "--representative", raw_text["train"]
    )
    assert code == 0, err
    assert output.exists()
    # Token ids are not texts: one line naming the file.
    code, out, err = run_cli(
        capsys, "export", raw_text["model"], tmp_path / "b.tflite", "--quantize", "int8",
        "--representative", raw_text["ids"],
    )
    assert_user_error(code, err, raw_text["ids"], "array of texts")


def test_model_texts_match_the_input_shape(raw_text):
    """The form of the texts the command passes is one Keras accepts in evaluate."""
    from keras_lowrank.cli.model_io import model_texts

    model = _load(raw_text["model"])
    texts, labels = _texts(8, seed=2)
    for given in (np.array(texts, dtype=object), np.array(texts)[:, None], [t.encode() for t in texts]):
        x = model_texts(model, given, "--train t.csv")
        assert tuple(x.shape) == (8, *raw_text["shape"])
        assert x.dtype.name == "string"
        loss, accuracy = model.evaluate(x, labels, batch_size=4, verbose=0)
        assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0


def test_model_texts_refuse_inputs_of_several_texts(capsys):
    import keras

    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import model_texts, text_input

    pair = keras.Input(shape=(2,), dtype="string")
    model = keras.Model(pair, keras.layers.Identity()(pair))
    assert text_input(model) is not None
    with pytest.raises(CLIError, match=r"raw text of shape \(2,\)"):
        model_texts(model, ["a", "b"], "--train t.csv")
    ids = keras.Input(shape=(3,), dtype="int32")
    assert text_input(keras.Model(ids, keras.layers.Identity()(ids))) is None
