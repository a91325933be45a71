"""`TableLayout.of` on reversible tables: an untied reverse table counts too.

`TableLayout.stored_bytes()` must predict `table_bytes(layer)` (the numbers
of the layer's variables) for Keras' `ReversibleEmbedding`, tied or not,
float32 or quantized by Keras, at two vocabulary sizes.
"""

import keras
import pytest

from keras_lowrank import TableLayout
from keras_lowrank import table_bytes


@pytest.mark.parametrize("rows", [100, 1001])
@pytest.mark.parametrize("tie_weights", [True, False])
@pytest.mark.parametrize("mode", [None, "int8", "int4"])
def test_keras_reversible_layout_predicts_its_bytes(rows, tie_weights, mode):
    layer = keras.layers.ReversibleEmbedding(rows, 32, tie_weights=tie_weights)
    layer.build()
    if mode:
        layer.quantize(mode)
    layout = TableLayout.of(layer)
    assert layout.untied_reverse is (not tie_weights)
    assert layout.stored_bytes() == table_bytes(layer)
    assert layout.params() == (1 if tie_weights else 2) * rows * 32
