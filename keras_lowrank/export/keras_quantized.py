"""Layers quantized by Keras' `quantize`, made convertible for LiteRT.

Keras computes a `quantize("int8")` `Dense` or `EinsumDense` with int8
matrix products (its inputs quantized on the fly), which the TFLite
converter cannot express in builtin ops. Its stored weights are plain
per-output-channel int8 codes with one float32 scale each, which is what
LiteRT's own dynamic-range quantization stores too. So the export puts a
float32 layer holding the dequantized kernel (`codes / scale`) in its place:
the file then stores it in float32, or with `quantize="dynamic"` as int8
codes of the same scales, and computes it as LiteRT computes every
dynamic-range layer. `compress(other_layers=("int8",))` results export
this way.

Keras' int4 modes (sub-channel scales and zero points, packed codes) have
no builtin LiteRT form; they are refused with a one-line error saying what
to do.
"""

import keras
import numpy as np

from keras_lowrank import _keras_private
from keras_lowrank.layers import table_kinds

_CONVERTIBLE = (keras.layers.Dense, keras.layers.EinsumDense)


def quantized_layers(model):
    """Layers of `model` quantized by Keras' `quantize` that are not tables.

    Every table kind exports its own stored form (builtin gathers); these
    are the other layers Keras quantized.
    """
    return [
        layer
        for layer in _keras_private.flatten_layers(model, include_self=False)
        if getattr(layer, "quantization_mode", None) is not None and not table_kinds.is_table(layer)
    ]


def dequantized(model):
    """`model`, or a copy whose Keras-int8 layers are float32 with dequantized kernels.

    Args:
        model: a built `keras.Model` (the id-input part of what is exported).

    Returns:
        `model` itself when no layer outside its tables is quantized by
        Keras, else a copy with those layers swapped for their float32
        twins (`keras_lowrank.surgery.replace_layers`; also inside nested
        models and KerasHub backbones).

    Raises:
        ValueError: when a quantized layer is not an int8 `Dense` or
            `EinsumDense`, or when the model cannot be copied to swap the
            layers nested inside it.
    """
    layers = quantized_layers(model)
    if not layers:
        return model
    unsupported = [
        layer for layer in layers if layer.quantization_mode != "int8" or not isinstance(layer, _CONVERTIBLE)
    ]
    if unsupported:
        listing = ", ".join(f"{layer.name} ({type(layer).__name__}, {layer.quantization_mode})" for layer in unsupported)
        raise ValueError(
            f"Layers quantized with Keras' `quantize` that have no builtin TFLite form: {listing}. Only int8 Dense "
            "and EinsumDense export (compress with other_layers=('int8',)); otherwise export the model before "
            "Keras' quantization and pass quantize='dynamic'."
        )
    # Swapped in a copy, as surgery swaps tables: a graph's own layers, and
    # layers inside a nested or subclassed model (a KerasHub backbone's
    # attention and feed-forward layers) alike.
    from keras_lowrank.surgery import copy_model
    from keras_lowrank.surgery import replace_layers

    try:
        copy = copy_model(model)
        replacements = {id(layer): _float_twin(layer) for layer in quantized_layers(copy)}
        return replace_layers(copy, replacements)
    except ValueError as error:
        raise ValueError(
            f"Cannot put the Keras-quantized layers of '{model.name}' back in float32 for the converter "
            f"({str(error).splitlines()[0]}). Export the model before Keras' quantization and pass "
            "quantize='dynamic' (the same int8 weights per output channel)."
        ) from error


def _float_twin(layer):
    """A float32 layer of `layer`'s configuration holding its dequantized kernel and its bias."""
    config = layer.get_config()
    config["dtype"] = "float32"
    new = layer.__class__.from_config(config)
    new.build_from_config(layer.get_build_config())
    weights = [dequantized_kernel(layer)]
    bias = getattr(layer, "bias", None)
    if bias is not None:
        weights.append(keras.ops.convert_to_numpy(bias))
    new.set_weights(weights)
    return new


def dequantized_kernel(layer):
    """The float32 kernel an int8 `Dense` / `EinsumDense` stands for: codes / scale.

    Keras keeps one scale per output channel, laid out for its int8 matrix
    product; Dense's broadcasts over the kernel's last axis, EinsumDense's
    is laid back out as the kernel (`_keras_private.einsum_kernel_scale`).
    """
    codes = np.asarray(keras.ops.convert_to_numpy(layer.kernel), np.float32)
    if isinstance(layer, keras.layers.EinsumDense):
        scale = _keras_private.einsum_kernel_scale(layer)
    else:
        scale = keras.ops.convert_to_numpy(layer.kernel_scale)
    return codes / np.asarray(scale, np.float32)
