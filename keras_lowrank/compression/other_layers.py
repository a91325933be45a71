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

import dataclasses

import keras

from keras_lowrank._keras_private import flatten_layers
from keras_lowrank.layers import table_kinds
from keras_lowrank.layers.table_layout import table_bytes
from keras_lowrank.surgery import copy_model

# The modes of Keras' `quantize` offered: weights per output channel, int8
# or int4, with float32 scales (Keras' defaults for these modes).
MODES = ("int8", "int4")


def linear_layers(model):
    """The `Dense` and `EinsumDense` layers of `model` outside its embedding tables.

    Also inside nested models and KerasHub backbones, in Keras' walk order;
    a table's own parts are its kind's to store.
    """
    inside_tables = set()
    for layer in flatten_layers(model, include_self=False):
        if table_kinds.is_table(layer):
            inside_tables.update(id(sub) for sub in flatten_layers(layer, include_self=True))
    return [
        layer
        for layer in flatten_layers(model, include_self=False)
        if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)) and id(layer) not in inside_tables
    ]


def quantizable_layers(model):
    """The layers of `linear_layers(model)` that Keras has not quantized yet."""
    return [layer for layer in linear_layers(model) if getattr(layer, "quantization_mode", None) is None]


@dataclasses.dataclass(frozen=True)
class OtherLayersPlan:
    """How a model's other layers are stored under one Keras quantization mode.

    Args:
        mode: `None` (as they are) or one of `MODES`.
        quantized: positions in `linear_layers(model)` of the layers
            quantized (those a `.keras` file of the quantized model records
            as quantized: a KerasHub task records its backbone's, not its
            head's).
        bytes: what every weight but the tables stores then.
        left_out: names of quantizable layers left in float because the
            model's config would not record their quantization.
        layer_types: the class names of `linear_layers(model)`, which a
            model the plan is applied to must have too.
    """

    mode: str
    quantized: tuple
    bytes: int
    left_out: tuple = ()
    layer_types: tuple = ()


def plan(model, tables, mode):
    """The `OtherLayersPlan` of `model` under `mode`, measured on a quantized copy.

    `model` is left as it is. Only layers whose quantization the model's
    config records are quantized, so that the result saves and loads as
    `.keras` (Keras rebuilds quantized layers from their dtype policy in
    the config; a layer the config does not record would be rebuilt float
    and fail to load its int8 weights).

    Args:
        model: a built `keras.Model`.
        tables: the `(path, layer)` tables of `model` the budget is shared
            with (their bytes are left out).
        mode: `None` (as stored now) or one of `MODES`.
    """
    tables_bytes = sum(table_bytes(layer) for _, layer in tables)
    linear = linear_layers(model)
    types = tuple(type(layer).__name__ for layer in linear)
    position = {id(layer): i for i, layer in enumerate(linear)}
    candidates = tuple(position[id(layer)] for layer in quantizable_layers(model))
    if mode is None or not candidates:
        return OtherLayersPlan(mode, (), table_bytes(model) - tables_bytes, layer_types=types)
    copy = copy_model(model)
    quantized_copy = linear_layers(copy)
    _quantize(copy, mode, [quantized_copy[i] for i in candidates])
    recorded = _recorded_quantized(copy)
    kept = tuple(i for i in candidates if recorded is None or recorded[i])
    # A layer left out stores its float weights, not the quantized copy's.
    left_out = [i for i in candidates if i not in kept]
    stored = table_bytes(copy) + sum(table_bytes(linear[i]) - table_bytes(quantized_copy[i]) for i in left_out)
    return OtherLayersPlan(mode, kept, stored - tables_bytes, tuple(linear[i].name for i in left_out), types)


def quantize_other_layers(model, other):
    """Quantizes a model's other layers in place with Keras' `Model.quantize`.

    Args:
        model: a built `keras.Model`.
        other: an `OtherLayersPlan` made for this model or a copy of it
            (its positions in `linear_layers`), or a mode (`None`: nothing
            is done; a string: every layer of `quantizable_layers`).

    Returns:
        The names of the layers quantized.
    """
    if other is None:
        return []
    if isinstance(other, str):
        return _quantize(model, other, quantizable_layers(model))
    layers = linear_layers(model)
    found = tuple(type(layer).__name__ for layer in layers)
    if found != other.layer_types:
        raise RuntimeError(
            f"The plan of the other layers was made for layers {list(other.layer_types)}, not {list(found)}")
    return _quantize(model, other.mode, [layers[i] for i in other.quantized])


def _quantize(model, mode, layers):
    ids = {id(layer) for layer in layers}
    if ids:
        model.quantize(mode, filters=lambda layer: id(layer) in ids)
    return [layer.name for layer in layers]


def _recorded_quantized(model):
    """For each of `linear_layers(model)`, whether the model's config records it as quantized.

    `None` when the config cannot be rebuilt here (nothing is then known).
    """
    try:
        rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    except Exception:  # noqa: BLE001 - an unregistered custom class: unknown
        return None
    before, after = linear_layers(model), linear_layers(rebuilt)
    if [type(layer) for layer in before] != [type(layer) for layer in after]:
        return None
    return [getattr(layer, "quantization_mode", None) is not None for layer in after]


def describe(mode):
    """How a candidate stores the other layers, in a few words."""
    return "other layers as they are" if mode is None else f"other layers Keras {mode}"
