"""`factorize_embeddings` on KerasHub models: classes kept, outputs exact.

Tiny models built from configs (no downloads). The reference for every
converted model is the original model holding the numpy product `A @ B` of
the installed factors in its dense token table: outputs must match it, in
both directions for tied embeddings (the LM logits go through the reverse
call). Skipped when keras-hub is not installed (`pip install
keras-lowrank[hub]`).
"""

import os

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402

from keras_lowrank.layers import LowRankReversibleEmbedding  # noqa: E402
from keras_lowrank.surgery import factorize_embeddings  # noqa: E402
from keras_lowrank.surgery import find_embeddings  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(195)]


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    # Paths such as "bert_backbone/token_embedding" hold the default names,
    # which count up across the models of earlier tests.
    keras.backend.clear_session()
TEXTS = ["w1 w2 w3 w4", "w5 w6", "w7 w8 w9"]


def _reference(model, path, new):
    """A copy of `model` whose dense table at `path` holds `A @ B`."""
    lookup, projection = (keras.ops.convert_to_numpy(w) for w in new.dequantized_factors())
    reference = keras.saving.load_model(_save(model, "reference.keras"))
    dense = dict(find_embeddings(reference))[path]
    dense.embeddings.assign(lookup @ projection)
    return reference


def _save(model, name):
    path = os.path.join(os.environ.get("PYTEST_TMP", "/tmp"), f"keras_lowrank_hub_{os.getpid()}_{name}")
    model.save(path)
    return path


def _bert_classifier():
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=8,
    )
    return keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=preprocessor)


def _gemma_lm():
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=300, num_layers=1, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32, head_dim=8,
    )
    return keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)


def test_bert_classifier_keeps_class_preprocessor_and_outputs(tmp_path):
    os.environ["PYTEST_TMP"] = str(tmp_path)
    model = _bert_classifier()
    before = np.asarray(model.predict(TEXTS, verbose=0))
    small, report = factorize_embeddings(model, compression=0.5, return_report=True)

    assert type(small) is keras_hub.models.BertTextClassifier
    assert isinstance(small.backbone, keras_hub.models.BertBackbone)
    assert small.preprocessor is not None
    new = small.backbone.token_embedding
    assert isinstance(new, LowRankReversibleEmbedding)
    assert [row.name for row in report.rows] == ["bert_backbone/token_embedding"]
    assert [row.name for row in report.skipped] == ["bert_backbone/segment_embedding"]
    # The original is untouched.
    assert type(model.backbone.token_embedding) is keras.layers.ReversibleEmbedding
    np.testing.assert_allclose(model.predict(TEXTS, verbose=0), before)

    reference = _reference(model, "bert_backbone/token_embedding", new)
    outputs = np.asarray(small.predict(TEXTS, verbose=0))
    np.testing.assert_allclose(outputs, reference.predict(TEXTS, verbose=0), atol=1e-5)

    restored = keras.saving.load_model(_save(small, "small.keras"))
    assert type(restored) is keras_hub.models.BertTextClassifier
    assert isinstance(restored.backbone.token_embedding, LowRankReversibleEmbedding)
    np.testing.assert_array_equal(restored.predict(TEXTS, verbose=0), outputs)


def test_segment_table_converted_only_when_named():
    model = _bert_classifier()
    small = factorize_embeddings(
        model, rank=1, layer_names=["token_embedding", "segment_embedding"]
    )
    assert type(small.backbone.get_layer("segment_embedding")).__name__ == "LowRankEmbedding"


def test_distilbert_token_and_position_embedding(tmp_path):
    os.environ["PYTEST_TMP"] = str(tmp_path)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=200, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=8,
    )
    path = "token_and_position_embedding/token_embedding"
    assert [p for p, _ in find_embeddings(backbone)] == [path]
    small = factorize_embeddings(backbone, compression=0.5)
    assert isinstance(small, keras_hub.models.DistilBertBackbone)
    new = small.get_layer("token_and_position_embedding").token_embedding
    assert isinstance(new, LowRankReversibleEmbedding)

    inputs = {
        "token_ids": np.random.randint(0, 200, size=(2, 8)),
        "padding_mask": np.ones((2, 8), dtype=bool),
    }
    reference = _reference(backbone, path, new)
    outputs = np.asarray(small(inputs))
    np.testing.assert_allclose(outputs, reference(inputs), atol=1e-5)
    restored = keras.saving.load_model(_save(small, "distilbert.keras"))
    assert isinstance(restored, keras_hub.models.DistilBertBackbone)
    np.testing.assert_array_equal(restored(inputs), outputs)


def test_gemma_causal_lm_tied_embeddings_and_generate(tmp_path):
    os.environ["PYTEST_TMP"] = str(tmp_path)
    model = _gemma_lm()
    small = factorize_embeddings(model, compression=0.5)
    assert type(small) is keras_hub.models.GemmaCausalLM
    new = small.backbone.token_embedding
    assert isinstance(new, LowRankReversibleEmbedding) and new.tie_weights

    rng = np.random.default_rng(0)
    inputs = {
        "token_ids": rng.integers(1, 300, size=(2, 6)),
        "padding_mask": np.ones((2, 6), dtype=bool),
    }
    # Logits use the table twice: the lookup and the tied reverse call.
    reference = _reference(model, "gemma_backbone/token_embedding", new)
    logits = np.asarray(small(inputs))
    np.testing.assert_allclose(logits, reference(inputs), atol=1e-4)

    prompt = {
        "token_ids": np.pad(inputs["token_ids"], ((0, 0), (0, 4))),
        "padding_mask": np.pad(inputs["padding_mask"], ((0, 0), (0, 4))),
    }
    generated = small.generate(prompt, max_length=10, stop_token_ids=None)
    expected = reference.generate(prompt, max_length=10, stop_token_ids=None)
    np.testing.assert_array_equal(generated["token_ids"], expected["token_ids"])

    restored = keras.saving.load_model(_save(small, "gemma.keras"))
    assert type(restored) is keras_hub.models.GemmaCausalLM
    np.testing.assert_array_equal(restored(inputs), logits)


def test_functional_model_around_a_converted_backbone_copies_and_reconverts():
    """`clone_model` re-creates the nested converted backbone, factors included.

    A plain Functional model wrapping a backbone (a sentence encoder, say) is
    copied layer by layer; the backbone must come back factorized, holding
    the same weights, or the copy would be the dense model with mismatched
    weights.
    """
    from keras_lowrank.surgery import copy_model

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=200, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=8,
    )
    inputs = {
        "token_ids": keras.Input((8,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input((8,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input((8,), dtype="bool", name="padding_mask"),
    }
    pooled = keras.layers.GlobalAveragePooling1D()(backbone(inputs)["sequence_output"])
    encoder = keras.Model(inputs, pooled)
    small = factorize_embeddings(encoder, rank=4, layer_names="token_embedding")

    copied = copy_model(small)
    nested = [layer for layer in copied.layers if isinstance(layer, keras_hub.models.BertBackbone)]
    assert len(nested) == 1
    assert isinstance(nested[0].token_embedding, LowRankReversibleEmbedding)
    data = {
        "token_ids": np.random.randint(0, 200, size=(2, 8)),
        "segment_ids": np.zeros((2, 8), dtype="int32"),
        "padding_mask": np.ones((2, 8), dtype=bool),
    }
    np.testing.assert_array_equal(copied(data), small(data))
    # Twice over: a copy of a copy stays converted.
    np.testing.assert_array_equal(copy_model(copied)(data), small(data))


@pytest.mark.parametrize("inner", ["codebook", "low_rank"])
def test_a_pruned_table_whose_inner_table_is_replaced_again_copies_and_reloads(tmp_path, inner):
    # compress() prunes a task's table, then swaps the pruned table's inner
    # table for its kind (a codebook, low-rank factors): a second surgery at
    # a path inside the first. Its `.keras` file must load (it did not: the
    # loader looked for the inner path before the pruned table was in).
    import keras_lowrank
    from keras_lowrank.layers import CodebookEmbedding
    from keras_lowrank.layers import PrunedEmbedding
    from keras_lowrank.surgery import copy_model
    from keras_lowrank.surgery import replace_layers

    keras.utils.set_random_seed(0)
    task = _bert_classifier()
    counts = np.arange(len(VOCAB))[::-1].astype("float64")
    pruned = keras_lowrank.prune_vocabulary(task, 120, counts=counts, layer_names="token_embedding", oov_id=1)
    table = pruned.backbone.token_embedding
    assert isinstance(table, PrunedEmbedding)
    if inner == "codebook":
        new = CodebookEmbedding.from_embedding(table.embedding, groups=4, codes=16, seed=0)
        small = replace_layers(pruned, {id(table.embedding): new})
    else:
        small = factorize_embeddings(pruned, rank=4, layer_names="token_embedding")
    inner_class = type(small.backbone.token_embedding.embedding)
    assert inner_class is not keras.layers.ReversibleEmbedding
    expected = small.predict(TEXTS, verbose=0)
    for other in (copy_model(small), keras.saving.load_model(_save(small, f"pruned_{inner}.keras"))):
        assert type(other) is type(task)
        assert type(other.backbone.token_embedding.embedding) is inner_class
        np.testing.assert_allclose(other.predict(TEXTS, verbose=0), expected, atol=1e-6)
