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
        model, train, validation, size=0.3, epochs=1, candidates=1, batch_size=16, seed=0,
        verbose=0, return_report=True,
    )
    assert type(small) is keras_hub.models.BertTextClassifier
    token = small.backbone.token_embedding
    assert isinstance(token, LowRankReversibleEmbedding)
    assert table_bytes(token) == report.embedding_bytes <= report.budget_bytes
    assert report.float32_embedding_bytes == 4 * VOCAB_SIZE * 16
    # The segment table is not compressed (only fine-tuned with the rest), and said so.
    segment = small.backbone.segment_embedding
    assert type(segment) is type(model.backbone.segment_embedding)
    assert segment.embeddings.shape == segment_before.shape
    assert any("segment_embedding" in note and "segment/type" in note for note in report.notes)
    assert not any("token counts" in note for note in report.notes)
    assert any("0.0001 -> 1e-06" in note and "attention" in note for note in report.notes)
    # A tied reversible table is never pruned: the reverse call spans all ids.
    assert all(r.recipe[p]["layout"]["rows"] == VOCAB_SIZE for r in report.candidates for p in r.recipe)
    assert small.predict(validation[0], verbose=0).shape == (16, 3)


def test_ids_of_a_nested_table_are_counted():
    model = _classifier()
    x, y = _data(40, 2)
    notes = []
    counts = compress_module._token_counts(
        model, "bert_backbone/token_embedding", model.backbone.token_embedding, (x, y), notes
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
    assert isinstance(small.backbone.token_embedding, LowRankReversibleEmbedding)
    assert any("preprocessed once" in note for note in report.notes)
    # Counted through the preprocessor: only the ids of w0..w39 and the
    # special tokens occur, so the rows chosen are scored on real counts.
    assert not any("token counts" in note for note in report.notes)
    assert small.predict(texts[32:], verbose=0).shape == (8, 2)


def test_prune_vocabulary_refuses_a_reversible_table():
    model = _classifier()
    with pytest.raises(ValueError, match="ReversibleEmbedding's reverse call"):
        keras_lowrank.prune_vocabulary(model, 100, layer_names="token_embedding")
    # Unnamed: the segment table is no vocabulary, the token table is refused.
    with pytest.raises(ValueError, match=r"cannot be pruned\)"):
        keras_lowrank.prune_vocabulary(model, 100)
