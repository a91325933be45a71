"""`compress()` on a KerasHub text classifier (a tiny BERT built from a config).

The class is kept, the token table is the only one compressed (the segment
table is a note, not a candidate), the budget holds against the byte counter,
the ids reaching the token table are counted although they are no input of
the outer graph (the table sits in the nested backbone), and a transformer
gets the transformer learning rates. Skipped without keras-hub.
"""

import importlib

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402

import keras_lowrank  # noqa: E402
from keras_lowrank.compression import table_bytes  # noqa: E402
from keras_lowrank.layers import LowRankReversibleEmbedding  # noqa: E402
from keras_lowrank.layers import PrunedEmbedding  # noqa: E402

# The module (the package exports the function under the same name).
compress_module = importlib.import_module("keras_lowrank.compression.compress")

VOCAB_SIZE, LENGTH = 300, 8


def _classifier(num_classes=3, preprocessor=None):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB_SIZE, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=LENGTH,
    )
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=num_classes, preprocessor=preprocessor)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _data(n, seed):
    rng = np.random.default_rng(seed)
    # Ids from a skewed distribution, so counting them matters.
    ids = np.minimum(rng.zipf(1.5, size=(n, LENGTH)), VOCAB_SIZE - 1).astype("int32")
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids, dtype=bool)}
    return x, rng.integers(0, 3, size=n)


def test_bert_classifier_compressed_within_budget_class_kept():
    model = _classifier()
    segment_before = np.array(model.backbone.segment_embedding.embeddings)
    train, validation = _data(48, 0), _data(16, 1)
    small, report = keras_lowrank.compress(
        model, train, validation, size=0.3, epochs=1, candidates=3, batch_size=16, seed=0,
        verbose=0, return_report=True,
    )
    assert type(small) is keras_hub.models.BertTextClassifier
    token = small.backbone.token_embedding
    assert isinstance(token, (LowRankReversibleEmbedding, PrunedEmbedding))
    assert table_bytes(token) == report.embedding_bytes <= report.budget_bytes
    assert report.float32_embedding_bytes == 4 * VOCAB_SIZE * 16
    # The segment table is not compressed (only fine-tuned with the rest), and said so.
    segment = small.backbone.segment_embedding
    assert type(segment) is type(model.backbone.segment_embedding)
    assert segment.embeddings.shape == segment_before.shape
    assert any("segment_embedding" in note and "segment/type" in note for note in report.notes)
    assert not any("token counts" in note for note in report.notes)
    assert any("0.0001 -> 1e-06" in note and "attention" in note for note in report.notes)
    # A classifier never calls its token table with reverse=True: every
    # family competes, pruned ones included, and each candidate builds.
    assert all(c.error is None for c in report.candidates), [c.error for c in report.candidates]
    assert {c.recipe[f"{model.backbone.name}/token_embedding"]["family"] for c in report.candidates} == {
        "low-rank", "pruned+low-rank", "pruned"}
    assert small.predict(validation[0], verbose=0).shape == (16, 3)


def test_ids_of_a_nested_table_are_counted():
    model = _classifier()
    x, y = _data(40, 2)
    notes = []
    counts = importlib.import_module("keras_lowrank.compression.data").token_counts(
        model, f"{model.backbone.name}/token_embedding", model.backbone.token_embedding, (x, y), notes
    )
    assert notes == []
    np.testing.assert_array_equal(counts, np.bincount(x["token_ids"].ravel(), minlength=VOCAB_SIZE))
    # The layer's own `call` is back (the recording hook is gone).
    assert "call" not in vars(model.backbone.token_embedding)


def test_classifier_with_preprocessor_takes_raw_texts():
    words = [f"w{i}" for i in range(VOCAB_SIZE - 5)]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=LENGTH)
    model = _classifier(num_classes=2, preprocessor=preprocessor)
    rng = np.random.default_rng(0)
    texts = [" ".join(f"w{i}" for i in rng.integers(0, 40, size=5)) for _ in range(40)]
    labels = rng.integers(0, 2, size=40)
    small, report = keras_lowrank.compress(
        model, (texts[:32], labels[:32]), (texts[32:], labels[32:]), size=0.3, epochs=1,
        candidates=1, batch_size=16, seed=0, verbose=0, return_report=True,
    )
    assert type(small) is keras_hub.models.BertTextClassifier and small.preprocessor is not None
    # Only 40 of the 295 words occur: pruning to the counted ids wins.
    assert isinstance(small.backbone.token_embedding, PrunedEmbedding)
    assert any("preprocessed once" in note for note in report.notes)
    assert any("'[UNK]' (id 1)" in note for note in report.notes)
    # Counted through the preprocessor: only the ids of w0..w39 and the
    # special tokens occur, so the rows chosen are scored on real counts.
    assert not any("token counts" in note for note in report.notes)
    assert small.predict(texts[32:], verbose=0).shape == (8, 2)


def test_pruned_token_table_keeps_class_outputs_and_file(tmp_path):
    model = _classifier()
    x, _ = _data(8, 3)
    counts = np.bincount(_data(64, 4)[0]["token_ids"].ravel(), minlength=VOCAB_SIZE)
    pruned = keras_lowrank.prune_vocabulary(model, 40, counts=counts, layer_names="token_embedding", oov_id=100)
    assert type(pruned) is keras_hub.models.BertTextClassifier
    layer = pruned.backbone.token_embedding
    assert isinstance(layer, PrunedEmbedding) and layer.rows == 40 and layer.reversible
    # The reference: the original model fed ids where every pruned id is the OOV id.
    kept = np.flatnonzero(np.isin(np.arange(VOCAB_SIZE), keras_lowrank.compression.kept_ids(
        VOCAB_SIZE, 40, counts=counts, oov_id=100)))
    mapped = dict(x, token_ids=np.where(np.isin(x["token_ids"], kept), x["token_ids"], 100).astype("int32"))
    outputs = np.asarray(pruned.predict(x, verbose=0))
    np.testing.assert_allclose(outputs, model.predict(mapped, verbose=0), atol=1e-5)

    path = str(tmp_path / "pruned_bert.keras")
    pruned.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is keras_hub.models.BertTextClassifier
    assert isinstance(restored.backbone.token_embedding, PrunedEmbedding)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), outputs)


def test_tokenizer_unknown_token_is_the_oov_row():
    words = [f"w{i}" for i in range(VOCAB_SIZE - 5)]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"] + words)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=LENGTH)
    model = _classifier(num_classes=2, preprocessor=preprocessor)
    notes = []
    assert compress_module._oov_id(model, None, notes) == 4
    assert "'[UNK]' (id 4)" in notes[0]
    assert compress_module._oov_id(model, 7, []) == 7
    assert compress_module._oov_id(_classifier(), None, []) == 1


def test_language_model_heads_are_never_pruned_classifier_tables_are():
    notes = []
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCAB_SIZE, num_layers=1, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32, head_dim=8,
    )
    causal = keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)
    ids = np.random.default_rng(0).integers(1, VOCAB_SIZE, size=(4, LENGTH)).astype("int32")
    causal_data = ({"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}, ids)
    assert not compress_module._may_prune(causal, "token_embedding", backbone.token_embedding, causal_data, 1, notes)
    assert "reverse=True" in notes[0]

    # BERT's masked LM calls the table in reverse inside its MaskedLMHead.
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB_SIZE, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=LENGTH,
    )
    masked = keras_hub.models.BertMaskedLM(bert, preprocessor=None)
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids, dtype=bool),
         "mask_positions": np.zeros((4, 2), "int32")}
    assert not compress_module._may_prune(masked, "token_embedding", bert.token_embedding, (x, ids[:, :2]), 1, [])

    classifier = _classifier()
    assert compress_module._may_prune(classifier, "token_embedding", classifier.backbone.token_embedding,
                                      _data(8, 0), 1, [])
    # DistilBERT's table sits in TokenAndPositionEmbedding, called inside its `call`.
    distil = keras_hub.models.DistilBertBackbone(
        vocabulary_size=VOCAB_SIZE, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=LENGTH,
    )
    distil_classifier = keras_hub.models.DistilBertTextClassifier(distil, num_classes=2, preprocessor=None)
    table = distil.get_layer("token_and_position_embedding").token_embedding
    distil_data = ({"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}, np.zeros(4, "int32"))
    assert compress_module._may_prune(distil_classifier, "token_embedding", table, distil_data, 1, [])


def test_pruned_int4_token_table_exports_to_litert(tmp_path):
    pytest.importorskip("ai_edge_litert")
    model = _classifier()
    counts = np.bincount(_data(64, 5)[0]["token_ids"].ravel(), minlength=VOCAB_SIZE)
    pruned = keras_lowrank.prune_vocabulary(model, 40, counts=counts, layer_names="token_embedding", oov_id=100)
    pruned.backbone.token_embedding.embedding.quantize("int4")
    # export_tflite takes one input of ids: the segment ids and mask follow from them.
    ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    wrapped = keras.Model(ids, pruned({"token_ids": ids, "segment_ids": keras.ops.zeros_like(ids),
                                       "padding_mask": keras.ops.not_equal(ids, 0)}))
    path = str(tmp_path / "pruned_int4.tflite")
    keras_lowrank.export_tflite(wrapped, path, batch_size=1)

    from keras_lowrank.export.tflite import invoke
    from keras_lowrank.export.tflite import make_interpreter
    from keras_lowrank.export.tflite import prepare_interpreter

    interpreter = make_interpreter(path)
    prepare_interpreter(interpreter, (1, LENGTH))
    x = _data(3, 6)[0]["token_ids"]
    for row in x:
        np.testing.assert_allclose(invoke(interpreter, row[None].astype("int32")), wrapped.predict(row[None], verbose=0), atol=1e-4)


def test_text_embedder_compressed_without_labels_keeps_its_class_and_exports(tmp_path):
    pytest.importorskip("ai_edge_litert")
    words = [f"w{i}" for i in range(VOCAB_SIZE - 5)]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)
    preprocessor = keras_hub.models.BertTextEmbedderPreprocessor(tokenizer, sequence_length=LENGTH)
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB_SIZE, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=LENGTH,
    )
    embedder = keras_hub.models.BertTextEmbedder(backbone, preprocessor=preprocessor)
    rng = np.random.default_rng(0)
    texts = [" ".join(f"w{i}" for i in rng.integers(0, 60, size=6)) for _ in range(80)]
    # A list of texts, no labels: the embedding objective.
    small, report = keras_lowrank.compress(embedder, texts[:64], texts[64:], size=0.3, epochs=1, candidates=2,
                                           batch_size=16, seed=0, verbose=0, return_report=True)
    assert type(small) is keras_hub.models.BertTextEmbedder
    assert table_bytes(small.backbone.token_embedding) <= int(0.3 * 4 * VOCAB_SIZE * 16)
    # The reported fidelity is the cosine of the two models' vectors on the validation texts.
    original = embedder.predict(texts[64:], verbose=0)
    compressed = small.predict(texts[64:], verbose=0)
    cosines = np.sum(original * compressed, -1) / (
        np.linalg.norm(original, axis=-1) * np.linalg.norm(compressed, axis=-1))
    assert report.fidelity["mean_cosine"] == pytest.approx(float(np.mean(cosines)), abs=1e-4)
    # And it exports in one call: ids in, the vector out.
    path = str(tmp_path / "embedder.tflite")
    keras_lowrank.export_tflite(small, path)
    ids = keras.ops.convert_to_numpy(small.preprocessor(texts[64:])["token_ids"])
    np.testing.assert_allclose(keras_lowrank.export.run_tflite(path, ids), compressed, atol=1e-5)


def test_whole_model_budget_quantizes_the_backbone_and_the_result_reloads(tmp_path):
    model = _classifier()
    train, validation = _data(48, 0), _data(16, 1)
    token = model.backbone.token_embedding
    float_other = table_bytes(model) - table_bytes(token)
    # Below what the float32 layers alone store: only Keras' int8 of them can meet it.
    budget = float_other - 1000
    small, report = keras_lowrank.compress(
        model, train, validation, max_model_bytes=budget, other_layers=("int8",), epochs=1, candidates=2,
        batch_size=16, seed=0, verbose=0, return_report=True,
    )
    assert report.other_layers == "int8"
    assert report.model_bytes == table_bytes(small) <= budget
    assert type(small) is keras_hub.models.BertTextClassifier
    # A KerasHub task records its backbone's quantization in its config, not its head's: the
    # head stays float32 (said in the notes) so that the .keras file loads.
    assert small.get_layer("logits").quantization_mode is None
    assert any("logits kept as they are" in note for note in report.notes)
    quantized = [layer for layer in small.backbone._flatten_layers() if getattr(layer, "quantization_mode", None)]
    assert any(isinstance(layer, keras.layers.EinsumDense) for layer in quantized)
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(validation[0], verbose=0), small.predict(validation[0], verbose=0), atol=1e-5)
    # The int8 backbone layers export as their dequantized kernels (swapped in a copy of the task).
    pytest.importorskip("ai_edge_litert")
    from keras_lowrank.export import export_tflite
    from keras_lowrank.export.tflite import TOLERANCES

    exported = export_tflite(small, tmp_path / "small.tflite", sequence_length=LENGTH,
                             probe=validation[0]["token_ids"])
    assert exported.flex_ops == []
    # Keras quantizes activations on the fly in its int8 products; the file computes in float32
    # with the same weights: within what dynamic-range quantization is allowed.
    assert exported.max_abs_difference < TOLERANCES["dynamic"]
    assert small.backbone.transformer_layers[0]._self_attention_layer._query_dense.quantization_mode == "int8"
