"""`export_tflite` on each backend: JAX through Keras' SavedModel export, PyTorch a clear error.

The TensorFlow route is tested in tests/export. On JAX with TensorFlow
installed the folded model goes through `model.export(format="tf_saved_model")`
and the TFLite converter with builtin ops only, with the same parity check;
without TensorFlow, and on PyTorch, the error says which route to use.
"""

import importlib.util

import pytest

import keras

import keras_lowrank

pytestmark = pytest.mark.backend_agnostic

HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None
HAS_LITERT = importlib.util.find_spec("ai_edge_litert") is not None


def _small():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,), dtype="int32"),
            keras.layers.Embedding(100, 16, mask_zero=True, name="embedding"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3),
        ]
    )
    return keras_lowrank.factorize_embeddings(model, rank=4)


def test_jax_exports_through_saved_model(tmp_path):
    if keras.backend.backend() != "jax" or not (HAS_TENSORFLOW and HAS_LITERT):
        pytest.skip("needs the JAX backend with TensorFlow and ai-edge-litert installed")
    report = keras_lowrank.export_tflite(_small(), str(tmp_path / "m.tflite"))
    assert report.folded and not report.flex_ops
    assert report.max_abs_difference < 1e-4


def test_missing_route_names_what_to_do(tmp_path):
    backend = keras.backend.backend()
    if backend == "tensorflow" or (backend == "jax" and HAS_TENSORFLOW):
        pytest.skip("this backend has a route here")
    with pytest.raises(ImportError) as error:
        keras_lowrank.export_tflite(_small(), str(tmp_path / "m.tflite"))
    message = str(error.value)
    assert "\n" not in message
    if backend == "torch":
        assert "KERAS_BACKEND=tensorflow" in message and "litert" in message
    else:
        assert "keras-lowrank[cpu]" in message
