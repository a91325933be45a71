"""Keras' own quantization of a model's other layers, for a whole-model budget.

With `compress(max_model_bytes=..., other_layers=("int8", "int4"))` the
budget may be reached by quantizing the weights that are not embedding
tables too, with Keras' `Model.quantize(mode)`: the `Dense` and
`EinsumDense` layers (a classifier's hidden and output layers, a
transformer's attention and feed-forward projections). Each allowed mode
leaves its own share of the budget to the tables, and the recipes of every
mode compete in the same search, so validation data decide between, say,
float32 layers next to a small table and int8 layers next to a larger one.

This module says which layers that is, what they store under each mode
(`keras_lowrank.compression.table_bytes` of a quantized copy: the one byte
counter), and applies the quantization. It must not plan or train.
"""

import keras

from keras_lowrank._keras_private import flatten_layers
from keras_lowrank.layers import table_kinds
from keras_lowrank.layers.table_layout import table_bytes
from keras_lowrank.surgery import copy_model

# The modes of Keras' `quantize` offered: weights per output channel, int8
# or int4, with float32 scales (Keras' defaults for these modes).
MODES = ("int8", "int4")


def quantizable_layers(model):
    """The layers of `model` that `quantize_other_layers` quantizes.

    `Dense` and `EinsumDense` layers, also inside nested models and
    KerasHub backbones, that Keras has not quantized yet and that are not
    part of an embedding table (a table's own parts are its kind's to
    store).

    Args:
        model: a built `keras.Model`.

    Returns:
        A list of layers, in Keras' walk order.
    """
    inside_tables = set()
    for layer in flatten_layers(model, include_self=False):
        if table_kinds.is_table(layer):
            inside_tables.update(id(sub) for sub in flatten_layers(layer, include_self=True))
    return [
        layer
        for layer in flatten_layers(model, include_self=False)
        if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))
        and getattr(layer, "quantization_mode", None) is None
        and id(layer) not in inside_tables
    ]


def quantize_other_layers(model, mode):
    """Quantizes `quantizable_layers(model)` in place with Keras' `quantize(mode)`.

    Args:
        model: a built `keras.Model`.
        mode: `None` (nothing is done) or one of `MODES`.

    Returns:
        The names of the layers quantized.
    """
    if mode is None:
        return []
    layers = quantizable_layers(model)
    chosen = {id(layer) for layer in layers}
    if chosen:
        model.quantize(mode, filters=lambda layer: id(layer) in chosen)
    return [layer.name for layer in layers]


def other_bytes(model, tables, mode):
    """Bytes every weight of `model` but `tables` stores once quantized in `mode`.

    Measured on a quantized copy (`model` is left as it is), with the same
    counter as every other byte figure of the package.

    Args:
        model: a built `keras.Model`.
        tables: the `(path, layer)` tables of `model` the budget is shared
            with (their bytes are left out).
        mode: `None` (as stored now) or one of `MODES`.
    """
    tables_bytes = sum(table_bytes(layer) for _, layer in tables)
    if mode is None or not quantizable_layers(model):
        return table_bytes(model) - tables_bytes
    copy = copy_model(model)
    quantize_other_layers(copy, mode)
    return table_bytes(copy) - tables_bytes


def describe(mode):
    """How a candidate stores the other layers, in a few words."""
    return "other layers as they are" if mode is None else f"other layers Keras {mode}"
