"""LowRankEmbedding: extreme row weights in `from_embedding`, int4 `block_size`."""

import warnings

import keras
import numpy as np
import pytest

from keras_lowrank.layers import LowRankEmbedding

pytestmark = pytest.mark.backend_agnostic


def _embedding(scale=1.0):
    layer = keras.layers.Embedding(40, 8)
    layer.build()
    table = np.random.default_rng(0).normal(size=(40, 8)) * scale
    layer.embeddings.assign(table.astype("float32"))
    return layer


@pytest.mark.parametrize("weight", [1e160, 1e-160])
def test_from_embedding_with_extreme_row_weights_is_finite(weight):
    weights = np.random.default_rng(1).uniform(1.0, 3.0, size=40)
    got = LowRankEmbedding.from_embedding(_embedding(), rank=3, row_weights=weights * weight)
    expected = LowRankEmbedding.from_embedding(_embedding(), rank=3, row_weights=weights)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(got.embeddings)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got.embeddings), keras.ops.convert_to_numpy(expected.embeddings), atol=1e-5)


def test_from_embedding_of_a_subnormal_table_has_nonzero_factors():
    layer = LowRankEmbedding.from_embedding(_embedding(1e-44), rank=3)
    assert np.any(keras.ops.convert_to_numpy(layer.lookup)) and np.any(keras.ops.convert_to_numpy(layer.projection))
    assert 0 < layer.factorization["energy"] <= 1


def test_int4_block_size_shorter_than_a_row_is_refused():
    from keras.quantizers import Int4QuantizationConfig

    layer = LowRankEmbedding(40, 8, 6)
    layer.build()
    with pytest.raises(ValueError, match="block_size=4"):
        layer.quantize("int4", config=Int4QuantizationConfig(block_size=4))
    assert layer.quantization_mode is None


@pytest.mark.parametrize("block_size", [None, -1, 6, 64])
def test_int4_block_size_of_a_row_or_more_is_per_row_without_warning(block_size):
    from keras.quantizers import Int4QuantizationConfig

    layer = LowRankEmbedding(40, 8, 6)
    layer.build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.quantize("int4", config=Int4QuantizationConfig(block_size=block_size))
    assert tuple(layer.lookup_scale.shape) == (40,)


def test_int4_default_call_still_works():
    layer = LowRankEmbedding(1000, 300, 150)  # rank above Keras' default 128
    layer.build()
    layer.quantize("int4")
    assert layer.quantization_mode == "int4"
