"""Smoke tests of the scripts in `examples/`: each runs end to end at its `--quick` size.

The scripts are loaded from their files and their `main(argv)` is called in
this process (TensorFlow is imported once); the checks are on what each
script promises to produce, not on accuracy, which a one-epoch run on a
subset cannot show.
"""

import importlib.util
import os
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_smoke_test():
    tested = {
        "intent_classifier_snips", "compress_saved_model",
        "low_rank_embedding_from_scratch", "calr_vs_constant",
    }
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested


def test_intent_classifier_snips(tmp_path):
    pytest.importorskip("ai_edge_litert")
    result = _load("intent_classifier_snips").main(["--quick", "--output", str(tmp_path)])
    assert (tmp_path / "snips_small.keras").is_file()
    tflite = tmp_path / "snips_small.tflite"
    assert tflite.is_file() and result["tflite_bytes"] == tflite.stat().st_size
    assert 0.0 <= result["small_accuracy"] <= 1.0


def test_compress_saved_model(tmp_path):
    import keras

    from keras_lowrank.layers import LowRankEmbedding

    module = _load("compress_saved_model")
    source = module.demo_model(str(tmp_path / "demo.keras"), 200, 16)
    output = module.main([source, str(tmp_path / "small.keras"), "--compression", "0.8"])
    layer = keras.saving.load_model(output).get_layer("embedding")
    assert isinstance(layer, LowRankEmbedding)
    assert layer.rank * (200 + 16) <= 0.2 * 200 * 16


def test_low_rank_embedding_from_scratch():
    accuracy = _load("low_rank_embedding_from_scratch").main(["--quick", "--rank", "8"])
    assert 0.0 <= accuracy <= 1.0


def test_calr_vs_constant(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "schedules.png"
    results = _load("calr_vs_constant").main(["--quick", "--plot", str(plot)])
    assert set(results) == {"constant", "CALR"}
    assert os.path.getsize(plot) > 0
