"""Constructor arguments of the low-rank table layers are validated up front.

A value that cannot work (an infinite soft cap makes every logit NaN, an
integer reverse dtype, a quantization config that is a string) is one
`ValueError` naming the argument and echoing the value, at construction.
"""

import math

import numpy as np
import pytest

import keras

from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.layers import LowRankReversibleEmbedding

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, RANK = 40, 8, 2


@pytest.mark.parametrize(
    "cap, echoed",
    [
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (math.nan, "nan"),
        (np.float32("inf"), r"np.float32\(inf\)"),
        (0.0, "0.0"),
        (-2.0, "-2.0"),
        (True, "True"),
        ("30", "'30'"),
    ],
)
def test_logit_soft_cap_must_be_a_positive_finite_number(cap, echoed):
    with pytest.raises(ValueError, match=r"`logit_soft_cap` to be None or a positive finite number.*"
                                         rf"logit_soft_cap={echoed}$"):
        LowRankReversibleEmbedding(VOCAB, DIM, RANK, logit_soft_cap=cap)


def test_a_finite_soft_cap_caps_the_logits():
    layer = LowRankReversibleEmbedding(VOCAB, DIM, RANK, logit_soft_cap=np.int64(2))
    assert layer.logit_soft_cap == 2.0 and type(layer.logit_soft_cap) is float
    hidden = np.random.default_rng(0).normal(size=(3, DIM)).astype("float32") * 10
    logits = keras.ops.convert_to_numpy(layer(hidden, reverse=True))
    lookup, projection = (keras.ops.convert_to_numpy(w) for w in layer.dequantized_factors())
    np.testing.assert_allclose(logits, np.tanh(hidden @ projection.T @ lookup.T / 2.0) * 2.0, rtol=1e-5, atol=1e-5)
    restored = LowRankReversibleEmbedding.from_config(layer.get_config())
    assert restored.logit_soft_cap == 2.0


@pytest.mark.parametrize("dtype", ["int32", "bool", "not_a_dtype", 3])
def test_reverse_dtype_must_be_a_float_dtype(dtype):
    with pytest.raises(ValueError, match=rf"`reverse_dtype` to be None or a float dtype.*reverse_dtype={dtype!r}"):
        LowRankReversibleEmbedding(VOCAB, DIM, RANK, reverse_dtype=dtype)


def test_reverse_dtype_is_stored_by_its_keras_name():
    layer = LowRankReversibleEmbedding(VOCAB, DIM, RANK, reverse_dtype=np.float16)
    assert layer.reverse_dtype == "float16"
    assert LowRankReversibleEmbedding.from_config(layer.get_config()).reverse_dtype == "float16"


@pytest.mark.parametrize("layer_class", [LowRankEmbedding, LowRankReversibleEmbedding])
def test_quantization_config_must_be_a_quantization_config(layer_class):
    with pytest.raises(ValueError, match=r"`quantization_config` to be None or a .*quantization_config='int8'"):
        layer_class(VOCAB, DIM, RANK, quantization_config="int8")
