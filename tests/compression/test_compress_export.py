"""Every table compress() can return exports to LiteRT with builtin ops and Keras parity.

`export_tflite` itself refuses Flex/custom ops and measures the largest
difference from Keras on a probe batch; here each recipe family goes through
it, int4 factors (unpacked without bitwise ops) and id remap tables included.
"""

import numpy as np
import pytest

import keras

import keras_lowrank
from keras_lowrank.compression import prune_vocabulary

VOCAB, DIM, LENGTH = 300, 16, 10

pytest.importorskip("ai_edge_litert")


def _model():
    model = keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32"),
            keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3),
        ]
    )
    model.get_layer("embedding").embeddings.assign(
        np.random.default_rng(0).normal(size=(VOCAB, DIM)).astype("float32")
    )
    return model


CASES = [
    pytest.param(None, False, 5, "int4", id="low-rank-int4"),
    pytest.param(60, True, 5, "int8", id="pruned-remap-low-rank-int8"),
    pytest.param(60, False, 5, "int4", id="pruned-low-rank-int4", marks=pytest.mark.slow),
    pytest.param(60, False, None, "int4", id="pruned-dense-int4", marks=pytest.mark.slow),
    pytest.param(60, True, None, "int8", id="pruned-remap-dense-int8", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("rows, remap, rank, storage", CASES)
def test_recipe_exports_with_builtin_ops_and_parity(rows, remap, rank, storage, tmp_path):
    model = _model()
    if rows:
        model = prune_vocabulary(model, rows, counts=(np.arange(VOCAB) % 17) if remap else None)
    if rank:
        model = keras_lowrank.factorize_embeddings(model, rank=rank)
    layer = model.get_layer("embedding")
    getattr(layer, "embedding", layer).quantize(storage)
    report = keras_lowrank.export_tflite(model, tmp_path / "m.tflite")
    assert report.max_abs_difference < 1e-4
    assert (tmp_path / "m.tflite").stat().st_size > 0
