"""A KerasHub text task exports in one call: ids in, the tokenizer inside the file.

Reference: the task itself, run by `predict` on the texts (its preprocessor
gives it ids, segment ids and the padding mask), against the file run on the
preprocessor's token ids alone. Skipped without keras-hub.
"""

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")
pytest.importorskip("ai_edge_litert")

import keras  # noqa: E402

import keras_lowrank  # noqa: E402
from keras_lowrank._keras_private import flatten_layers  # noqa: E402
from keras_lowrank.export import read_task_settings  # noqa: E402
from keras_lowrank.export import run_tflite  # noqa: E402

VOCAB_SIZE, LENGTH = 300, 8
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TEXTS = ["w1 w2 w3", "w7 zz w9 w10 w11 w12 w13 w14 w15", "w4", "unknown w2"]


def _task(preprocessor=True):
    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=SPECIAL + [f"w{i}" for i in range(VOCAB_SIZE - 5)])
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB_SIZE, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=LENGTH,
    )
    preprocessor = (keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=LENGTH)
                    if preprocessor else None)
    return keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=preprocessor)


def _ids(task, texts):
    return keras.ops.convert_to_numpy(task.preprocessor(texts)["token_ids"])


@pytest.mark.parametrize("batch_size", [None, 1])
def test_task_exports_in_one_call_and_carries_its_tokenizer(tmp_path, batch_size):
    task = _task()
    path = str(tmp_path / "task.tflite")
    report = keras_lowrank.export_tflite(task, path, batch_size=batch_size)
    assert report.flex_ops == []
    assert list(report.signature["inputs"].values()) == ["token_ids"]
    assert report.input_shape == (batch_size, LENGTH)
    np.testing.assert_allclose(run_tflite(path, _ids(task, TEXTS)), task.predict(TEXTS, verbose=0), atol=1e-5)
    settings = read_task_settings(path)
    assert settings["vocabulary"] == task.preprocessor.tokenizer.get_vocabulary()
    assert (settings["tokenizer"], settings["sequence_length"], settings["pad_id"]) == ("BertTokenizer", LENGTH, 0)
    assert settings["wordpiece"] is True
    assert settings["special_token_ids"]["cls_token_id"] == 2
    from keras_lowrank.export.keras_hub_task import METADATA_NAME
    from keras_lowrank.export.metadata import read_metadata

    assert report.tokenizer_bytes == len(read_metadata(path, METADATA_NAME)) > 0


def test_pruned_task_exports_with_its_remapped_ids(tmp_path):
    task = _task()
    counts = np.bincount(_ids(task, TEXTS * 5).ravel(), minlength=VOCAB_SIZE)
    small = keras_lowrank.prune_vocabulary(task, 20, counts=counts, layer_names="token_embedding", oov_id=1)
    path = str(tmp_path / "small.tflite")
    keras_lowrank.export_tflite(small, path)
    np.testing.assert_allclose(run_tflite(path, _ids(task, TEXTS)), small.predict(TEXTS, verbose=0), atol=1e-5)


def test_task_whose_backbone_keras_quantized_to_int4_exports_what_keras_computes(tmp_path):
    # `compress(max_model_bytes=..., other_layers=("int8", "int4"))` may quantize
    # the backbone's Dense/EinsumDense layers to int4 with Keras (weights only:
    # Keras' int4 leaves the inputs in float), and the file computes the same.
    from keras_lowrank.compression import other_layers

    task = _task()
    # What compress() quantizes: the backbone's layers (the task's config records them), not the head.
    int4 = other_layers.plan(task, [], "int4")
    assert int4.left_out == ("logits",)
    assert "logits" not in other_layers.quantize_other_layers(task, int4)
    path = str(tmp_path / "task.tflite")
    report = keras_lowrank.export_tflite(task, path)
    assert report.flex_ops == []
    np.testing.assert_allclose(run_tflite(path, _ids(task, TEXTS)), task.predict(TEXTS, verbose=0), atol=1e-4)


def test_task_fine_tuned_with_qlora_exports_what_keras_computes(tmp_path):
    # KerasHub's QLoRA recipe: the backbone quantized by Keras (int4: weights
    # only), then LoRA on its query and value projections; the file holds
    # each projection's dequantized kernel with the update merged.
    task = _task()
    task.backbone.quantize("int4")
    task.backbone.enable_lora(2)
    lora = [layer for layer in flatten_layers(task.backbone) if getattr(layer, "lora_enabled", False)]
    assert lora
    for layer in lora:
        layer.lora_kernel_b.assign(np.random.default_rng(4).normal(0, 0.3, layer.lora_kernel_b.shape))
    path = str(tmp_path / "task.tflite")
    report = keras_lowrank.export_tflite(task, path)
    assert report.flex_ops == []
    np.testing.assert_allclose(run_tflite(path, _ids(task, TEXTS)), task.predict(TEXTS, verbose=0), atol=1e-4)


def test_task_without_preprocessor_takes_the_length_it_is_given(tmp_path):
    task = _task(preprocessor=False)
    path = str(tmp_path / "bare.tflite")
    report = keras_lowrank.export_tflite(task, path, sequence_length=LENGTH)
    assert report.input_shape == (None, LENGTH)
    ids = np.random.default_rng(0).integers(1, VOCAB_SIZE, size=(3, LENGTH)).astype("int32")
    ids[:, -2:] = 0
    inputs = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": ids != 0}
    np.testing.assert_allclose(run_tflite(path, ids), task.predict(inputs, verbose=0), atol=1e-5)
    assert read_task_settings(path)["vocabulary"] is None


def test_a_length_other_than_the_preprocessors_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sequence_length 8 of the task's preprocessor"):
        keras_lowrank.export_tflite(_task(), str(tmp_path / "m.tflite"), sequence_length=12)
    assert not list(tmp_path.iterdir())


def test_command_line_exports_a_saved_task(tmp_path, capsys):
    from keras_lowrank.cli.main import main

    task = _task()
    task.save(tmp_path / "task.keras")
    out = tmp_path / "task.tflite"
    assert main(["export", str(tmp_path / "task.keras"), str(out)]) == 0
    assert "KerasHub task: BertTokenizer tokenizer" in capsys.readouterr().out
    np.testing.assert_allclose(run_tflite(str(out), _ids(task, TEXTS)), task.predict(TEXTS, verbose=0), atol=1e-5)


# Texts that exercise every rule of WordPiece pre-tokenization: accents,
# capitals, ASCII and Unicode punctuation, CJK, control and format
# characters, ligatures and full-width forms (NFKC), a word over 100 bytes,
# pieces and unknown words, and a text longer than the packed length.
HARD_TEXTS = [
    "Book a table for TWO!", "Café crème, s'il vous plaît.", "booking tables... tonight?!",
    "中文 and 日本語 text", "tab\tnew\nline\u200bzero\u00adsoft", "ﬁne ＡＢＣ！full-width",
    "x" * 120, "unbookable tables books", "", "   ", "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12",
    "«quotes» — dashes … and ¿questions?", "emoji 🙂 and symbols $%^&*",
]
WORDPIECES = ["book", "##s", "##ing", "##able", "un", "table", "tables", "for", "two", "!", ".", "?",
              "'", ",", "cafe", "creme", "s", "il", "vous", "plait", "tonight", "中", "文", "and", "text",
              "tab", "new", "line", "zero", "soft", "fine", "abc", "full", "-", "width", "x", "##x",
              "«", "»", "—", "…", "¿", "$", "%", "^", "&", "*", "quotes", "dashes", "questions", "emoji",
              "symbols"]


def _wordpiece_task(lowercase, length=12):
    keras.utils.set_random_seed(0)
    vocabulary = SPECIAL + WORDPIECES + [f"w{i}" for i in range(20)]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=lowercase)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=length,
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=length)
    return keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=preprocessor)


@pytest.mark.parametrize("lowercase", [True, False])
def test_the_reference_runner_tokenizes_and_runs_a_task_file_like_the_task(tmp_path, lowercase):
    task = _wordpiece_task(lowercase)
    path = str(tmp_path / "task.tflite")
    keras_lowrank.export_tflite(task, path)
    runner = keras_lowrank.export.TextRunner(path)
    assert isinstance(runner.tokenizer, keras_lowrank.export.WordPieceTokenizer)
    np.testing.assert_array_equal(runner.tokenize(HARD_TEXTS), _ids(task, HARD_TEXTS))
    np.testing.assert_allclose(runner(HARD_TEXTS), task.predict(HARD_TEXTS, verbose=0), atol=1e-5)


def test_a_task_file_without_its_preprocessor_has_no_runner(tmp_path):
    path = str(tmp_path / "task.tflite")
    keras_lowrank.export_tflite(_task(preprocessor=False), path, sequence_length=LENGTH)
    with pytest.raises(ValueError, match="no tokenizer settings"):
        keras_lowrank.export.TextRunner(path)
