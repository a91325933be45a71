"""Layers quantized by Keras' `quantize`, made convertible for LiteRT.

Keras computes a `quantize("int8")` or `quantize("int4")` `Dense` or
`EinsumDense` with its own integer products and unpacking, which the TFLite
converter cannot express in builtin ops. Its stored weights are integer
codes with float32 scales (int8: one per output channel; int4: one per
output channel, or per block of inputs with zero points), so the export
puts a float32 layer holding the dequantized kernel in its place. The file
then stores it in float32; with `quantize="dynamic"` as int8 codes per
output channel (for a Keras-int8 layer, the same codes and scales: what
LiteRT's dynamic range stores too), or with `quantize="int4"` as int4 codes
per output channel, written again from the dequantized kernel.
`compress(max_model_bytes=..., other_layers=...)` results export this way.

Keras' int4 `Embedding` (a "dense int4" table, e.g. pruning alone in
`compress()`) unpacks its whole table before the lookup, which the converter
folds into one int8 constant: twice the bytes Keras stores. The export puts
a lookup of the same variables in its place that gathers the packed rows
first and unpacks only those, with arithmetic in builtin ops, so the file
keeps half a byte a number. Keras' other quantized layers have no builtin
LiteRT form; they are refused with a one-line error saying what to do.
"""

import keras
import numpy as np

from keras_lowrank import _keras_private
from keras_lowrank.layers import table_kinds

_CONVERTIBLE = (keras.layers.Dense, keras.layers.EinsumDense)
_CONVERTIBLE_MODES = ("int8", "int4")


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
    """`model`, or a copy whose Keras-quantized layers are float32 with dequantized kernels.

    Args:
        model: a built `keras.Model` (the id-input part of what is exported).

    Returns:
        `model` itself when no layer outside its tables is quantized by
        Keras, else a copy with those layers swapped for their float32
        twins (`keras_lowrank.surgery.replace_layers`; also inside nested
        models and KerasHub backbones).

    Raises:
        ValueError: when a quantized layer is not an int8 or int4 `Dense`
            or `EinsumDense`, or when the model cannot be copied to swap
            the layers nested inside it.
    """
    layers = quantized_layers(model)
    if not layers and not _int4_tables(model):
        return model
    unsupported = [
        layer for layer in layers
        if layer.quantization_mode not in _CONVERTIBLE_MODES or not isinstance(layer, _CONVERTIBLE)
    ]
    if unsupported:
        listing = ", ".join(f"{layer.name} ({type(layer).__name__}, {layer.quantization_mode})" for layer in unsupported)
        raise ValueError(
            f"Layers quantized with Keras' `quantize` that have no builtin TFLite form: {listing}. Only int8 and "
            "int4 Dense and EinsumDense export; otherwise export the model before Keras' quantization and pass "
            "quantize='dynamic' (int8 weights) or quantize='int4'."
        )
    # Swapped in a copy, as surgery swaps tables: a graph's own layers, and
    # layers inside a nested or subclassed model (a KerasHub backbone's
    # attention and feed-forward layers) alike.
    from keras_lowrank.surgery import copy_model
    from keras_lowrank.surgery import replace_layers

    try:
        copy = copy_model(model)
        replacements = {id(layer): _float_twin(layer) for layer in quantized_layers(copy)}
        replacements.update({id(layer): PackedInt4Lookup(layer) for layer in _int4_tables(copy)})
        return replace_layers(copy, replacements)
    except ValueError as error:
        swapped = "put its Keras-quantized layers back in float32" if layers else "look up its Keras-int4 tables packed"
        raise ValueError(
            f"Cannot copy '{model.name}' to {swapped} for the converter ({str(error).splitlines()[0]}). "
            "Export the model before Keras' quantization and pass quantize='dynamic' (int8 weights) "
            "or quantize='int4'."
        ) from error


def _float_twin(layer):
    """A float32 layer of `layer`'s configuration holding its dequantized kernel (LoRA merged) and its bias."""
    config = layer.get_config()
    config["dtype"] = "float32"
    # The LoRA update is merged into the kernel.
    config.pop("lora_rank", None)
    config.pop("lora_alpha", None)
    new = layer.__class__.from_config(config)
    new.build_from_config(layer.get_build_config())
    weights = [dequantized_kernel(layer)]
    bias = getattr(layer, "bias", None)
    if bias is not None:
        weights.append(keras.ops.convert_to_numpy(bias))
    new.set_weights(weights)
    return new


def dequantized_kernel(layer):
    """The float32 kernel a Keras-quantized `Dense` / `EinsumDense` stands for.

    int8: codes / scale, one scale per output channel, laid out by Keras for
    its int8 matrix product; Dense's broadcasts over the kernel's last axis,
    EinsumDense's is laid back out as the kernel
    (`_keras_private.einsum_kernel_scale`).

    int4: Keras keeps the kernel as a `(rows, columns)` matrix (rows: the
    summed axes) packed two codes a byte; `layer.kernel` gives the codes
    unpacked in the kernel's shape. Per output channel (`columns` scales)
    the kernel is codes / scale; per block of rows (Keras' sub-channel
    layout, scales and zero points of shape `(blocks, columns)` with each
    row's block in `g_idx`) it is `(codes - zero) * scale`, as Keras'
    `_int4_call` computes it.

    With LoRA enabled (Keras' QLoRA: a float low-rank update trained on
    the quantized kernel), `layer.kernel` is the codes plus the update; the
    update is taken off before dequantizing and added to the result, which
    is what the layer computes (quantized product plus LoRA product).
    """
    numpy = keras.ops.convert_to_numpy
    codes = np.asarray(numpy(layer.kernel), np.float32)
    update = _lora_update(layer)
    if update is not None:
        codes = np.round(codes - update)
    if layer.quantization_mode == "int4":
        scale = np.asarray(numpy(layer.kernel_scale), np.float32)
        matrix = codes.reshape(-1, scale.shape[-1])
        if scale.ndim == 1:
            matrix = matrix / scale
        else:
            blocks = np.asarray(numpy(layer.g_idx)).astype(np.int64)
            zero = np.asarray(numpy(layer.kernel_zero), np.float32)
            matrix = (matrix - zero[blocks]) * scale[blocks]
        kernel = matrix.reshape(codes.shape)
    else:
        if isinstance(layer, keras.layers.EinsumDense):
            scale = _keras_private.einsum_kernel_scale(layer)
        else:
            scale = numpy(layer.kernel_scale)
        kernel = codes / np.asarray(scale, np.float32)
    return kernel if update is None else kernel + update


def _lora_update(layer):
    """The float update LoRA adds to `layer`'s kernel (`alpha / rank * A @ B`), or `None`."""
    if not getattr(layer, "lora_enabled", False):
        return None
    numpy = keras.ops.convert_to_numpy
    product = np.matmul(np.asarray(numpy(layer.lora_kernel_a), np.float32),
                        np.asarray(numpy(layer.lora_kernel_b), np.float32))
    return np.float32(layer.lora_alpha / layer.lora_rank) * product


def _int4_tables(model):
    """Keras `Embedding`s of `model` quantized to int4 by Keras (also inside a `PrunedEmbedding`)."""
    return [
        layer
        for layer in _keras_private.flatten_layers(model, include_self=False)
        if isinstance(layer, keras.layers.Embedding) and getattr(layer, "quantization_mode", None) == "int4"
    ]


class PackedInt4Lookup(keras.layers.Layer):
    """Keras' int4 `Embedding`, gathering its packed rows before unpacking them (export only).

    Holds the same packed codes, scales, zero points and group index as the
    source layer, and computes what its `call` computes: the codes of the
    looked-up rows, then per output channel `codes / scale`, or per group
    `(codes - zero) * scale` (sub-channel, Keras' default block of 128).

    A `ReversibleEmbedding` asked for logits (`reverse=True`, a tied
    language-model head) is left to the source layer, which the lookup
    keeps for that.

    Args:
        source: a built Keras `Embedding` (or `ReversibleEmbedding`)
            quantized with `quantize("int4")`.
    """

    def __init__(self, source, **kwargs):
        super().__init__(name=source.name, dtype="float32", **kwargs)
        self.source = source if isinstance(source, keras.layers.ReversibleEmbedding) else None
        self.input_dim, self.output_dim = int(source.input_dim), int(source.output_dim)
        self.mask_zero = bool(source.mask_zero)
        block = getattr(source, "_int4_block_size", None)
        self.per_channel = block is None or block == -1

        def constant(name, value, dtype):
            variable = self.add_weight(name=name, shape=value.shape, dtype=dtype, trainable=False,
                                       initializer="zeros")
            variable.assign(value)
            return variable

        numpy = keras.ops.convert_to_numpy
        self.packed = constant("embeddings", numpy(source._embeddings), "int8")
        self.scale = constant("embeddings_scale", numpy(source.embeddings_scale).astype("float32"), "float32")
        if not self.per_channel:
            self.zero = constant("embeddings_zero", numpy(source.embeddings_zero).astype("float32"), "float32")
            self.groups = np.asarray(numpy(source.g_idx), dtype="int32")
        self.built = True

    def call(self, inputs, reverse=False):
        from keras import ops

        from keras_lowrank.layers import storage

        if reverse:
            if self.source is None:
                raise ValueError(f"'{self.name}' is an Embedding: it computes no logits (reverse=True)")
            return self.source(inputs, reverse=True)
        ids = ops.cast(inputs, "int32")
        low, high = storage.int4_nibbles(ops.take(self.packed, ids, axis=0))
        # Keras packs code 2i in the low nibble of byte i and 2i+1 in the high one.
        codes = ops.reshape(ops.stack([low, high], axis=-1), (*ops.shape(low)[:-1], -1))[..., : self.output_dim]
        codes = ops.cast(codes, "float32")
        scale = ops.take(self.scale, ids, axis=0)
        if self.per_channel:
            return codes / ops.reshape(scale, (*ops.shape(codes)[:-1], 1))
        zero = ops.take(ops.take(self.zero, ids, axis=0), self.groups, axis=-1)
        return (codes - zero) * ops.take(scale, self.groups, axis=-1)

    def compute_mask(self, inputs, mask=None):
        from keras import ops

        return ops.not_equal(inputs, 0) if self.mask_zero else None

