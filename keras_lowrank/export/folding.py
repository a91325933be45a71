"""Folds the projection of low-rank embeddings into the layer that consumes it.

A `LowRankEmbedding` computes `A[ids] @ B`. When the next thing done with
that output is linear, `B` can be multiplied into the consumer's kernel once,
offline, so that inference gathers `rank`-wide rows and never forms the
`output_dim`-wide embedding at all:

- masked mean pooling (`GlobalAveragePooling1D`, or the models package's
  `MaskedGlobalAveragePooling1D`) followed by `Dense` (DAN):
  `mean(A[ids] @ B) @ W = mean(A[ids]) @ (B @ W)`;
- the input kernel of an `LSTM`, `GRU` or `SimpleRNN` (also inside
  `Bidirectional`): `x_t @ W_in = A[id_t] @ (B @ W_in)`;
- the kernel of a `Conv1D` (also inside the models package's
  `MaskedConv1DMaxPooling`) or of a `Dense` applied to every token.

Layers that are the identity at inference (dropout, noise) are looked
through. Every other consumer keeps the factorized form: the rebuilt model
looks up `A` and applies `B` as a separate bias-free `Dense`, which is the
same computation the `LowRankEmbedding` did. That fallback is recorded in the
`FoldReport`; it is never an error.

The folded model is meant for inference and export: its lookup layer has no
trainable projection any more, so fine-tuning must happen before folding.
This module must not convert to TFLite (see `keras_lowrank.export.tflite`) and
must not mutate the model it is given.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_lowrank import _keras_private
from keras_lowrank.layers import table_kinds

# Layers whose output equals their input at inference, so that the projection
# commutes with them.
_IDENTITY_AT_INFERENCE = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
)
_RECURRENT = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)


@keras.saving.register_keras_serializable(package="keras_lowrank")
class FoldedLookup(keras.layers.Layer):
    """The lookup half of a low-rank embedding, left after folding.

    Gathers the rows of the factor `A` (`lookup`, shape
    `(input_dim, rank)`) for integer ids. When the factor was quantized to
    int8 (per-row scales), the int8 rows and their scales are gathered and
    the rows are rescaled after the lookup (`code / scale`, Keras'
    convention), so the table stays int8 in a
    exported file. The mask is the one `LowRankEmbedding` computes:
    `ids != 0` when `mask_zero=True`.

    Built by `fold_projections`; you rarely create it yourself.

    Args:
        input_dim: Integer, size of the vocabulary.
        rank: Integer, width of the gathered rows.
        mask_zero: Boolean, whether id 0 is padding to be masked.
        quantized: Boolean, whether `lookup` is int8 with a `lookup_scale`
            per row.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Input shape:
        Integer tensor of any shape `(...)`.

    Output shape:
        `(..., rank)`.
    """

    def __init__(self, input_dim, rank, mask_zero=False, quantized=False, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("input_dim", input_dim), ("rank", rank)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(
                    f"Expected `{arg}` to be a positive integer, received: "
                    f"{arg}={value}"
                )
        self.input_dim = int(input_dim)
        self.rank = int(rank)
        self.mask_zero = bool(mask_zero)
        self.quantized = bool(quantized)
        self.supports_masking = self.mask_zero

    def build(self, input_shape=None):
        if self.built:
            return
        self.lookup = self.add_weight(
            name="lookup",
            shape=(self.input_dim, self.rank),
            initializer="zeros",
            dtype="int8" if self.quantized else self.variable_dtype,
            trainable=False,
        )
        if self.quantized:
            self.lookup_scale = self.add_weight(
                name="lookup_scale",
                shape=(self.input_dim,),
                initializer="ones",
                trainable=False,
            )
        self.built = True

    def call(self, inputs):
        ids = ops.cast(inputs, "int32")
        rows = ops.take(self.lookup, ids, axis=0)
        if not self.quantized:
            return ops.cast(rows, self.compute_dtype)
        scale = ops.take(self.lookup_scale, ids, axis=0)
        rows = ops.cast(rows, self.compute_dtype)
        # Keras' quantization convention: value = code / scale.
        return rows / ops.expand_dims(ops.cast(scale, self.compute_dtype), -1)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.rank)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            rank=self.rank,
            mask_zero=self.mask_zero,
            quantized=self.quantized,
        )
        return config


@dataclasses.dataclass
class FoldRecord:
    """What happened to one consumer of one low-rank embedding.

    Attributes:
        embedding: Name of the `LowRankEmbedding` layer.
        consumer: Name of the layer that received its output (`None` when
            none did: the embedding's output is a model output).
        kind: `"pooled_dense"`, `"recurrent"`, `"conv1d"`, `"dense"`, or
            `"kept"` for the factorized fallback.
        folded: Whether the projection was folded into `consumer`.
        reason: Why it was kept, for a fallback; empty otherwise.
    """

    embedding: str
    consumer: str | None
    kind: str
    folded: bool
    reason: str = ""


@dataclasses.dataclass
class FoldReport:
    """Summary of `fold_projections`.

    Attributes:
        records: One `FoldRecord` per consumer met.
        applied: Whether the returned model is the folded one (`False` when
            nothing was folded, or when folding would not shrink the weights).
        bytes_before: Weight bytes of the given model.
        bytes_after: Weight bytes of the returned model.
        reason: Why folding was not applied, when `applied` is `False`.
    """

    records: list
    applied: bool
    bytes_before: int
    bytes_after: int
    reason: str = ""

    @property
    def folded(self):
        """The records of the consumers whose kernel absorbed a projection."""
        return [r for r in self.records if r.folded]

    @property
    def kept(self):
        """The records where the factorized form was kept."""
        return [r for r in self.records if not r.folded]

    def to_dict(self):
        return dataclasses.asdict(self)

    def __str__(self):
        lines = [
            f"Folding {'applied' if self.applied else 'not applied'}"
            + (f" ({self.reason})" if self.reason else "")
            + (
                f": weights {self.bytes_before:,} -> {self.bytes_after:,} bytes"
                if self.applied
                else f": weights unchanged, {self.bytes_before:,} bytes"
            )
        ]
        for r in self.records:
            if r.folded:
                lines.append(f"  folded: {r.embedding} into {r.consumer} ({r.kind})")
                continue
            before = f" before {r.consumer}" if r.consumer is not None else ""
            reason = f" ({r.reason})" if r.reason else ""
            lines.append(f"  kept factorized: {r.embedding}{before}{reason}")
        return "\n".join(lines)


def is_low_rank_embedding(layer):
    """Whether `layer` stores a table whose kind folds (low rank: `A[ids] @ B`).

    The registry of table kinds (`keras_lowrank.layers.table_kinds`) says
    which kinds fold; a `PrunedEmbedding` is not one itself (its wrapped
    table is).
    """
    kind = table_kinds.kind_of(layer)
    return (
        kind is not None and kind.foldable and table_kinds.stored_table(layer) is layer
        and not isinstance(layer, FoldedLookup)
    )


def weight_bytes(model):
    """Bytes held by the variables of `model` (what an exported file stores)."""
    total = 0
    for v in model.weights:
        total += int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
    return total


def factors(layer):
    """Reads the factors of a `LowRankEmbedding` as numpy arrays.

    Returns:
        `(lookup, lookup_scale, projection)`: `lookup` is float32 `[V, r]`, or
        int8 codes with `lookup_scale` float32 `[V]` (value = code / scale,
        as in Keras) when the layer was quantized to int8; `projection` is always float32 `[r, d]` (int8 projections are
        dequantized: `B` is small and is multiplied into other kernels).
        `None` when the layer's quantization mode is not supported here.
    """
    mode = getattr(layer, "quantization_mode", None)
    if mode is None:
        lookup = np.asarray(keras.ops.convert_to_numpy(layer.lookup), "float32")
        projection = np.asarray(
            keras.ops.convert_to_numpy(layer.projection), "float32"
        )
        return lookup, None, projection
    if mode != "int8":
        # int4 codes are packed two per byte; unpacking them would double
        # the table, so int4 layers keep their own (factorized) lookup.
        return None
    lookup = keras.ops.convert_to_numpy(layer.lookup)
    lookup_scale = getattr(layer, "lookup_scale", None)
    if lookup.dtype != np.int8 or lookup_scale is None:
        return None
    lookup_scale = np.asarray(
        keras.ops.convert_to_numpy(lookup_scale), "float32"
    ).reshape(lookup.shape[0])
    # Keras' convention: value = code / scale; B (small) is dequantized.
    _, projection = layer.dequantized_factors()
    projection = np.asarray(keras.ops.convert_to_numpy(projection), "float32")
    return lookup, lookup_scale, projection


def fold_projections(model):
    """Folds low-rank projections into their linear consumers.

    Rebuilds `model` (Functional or Sequential) so that each
    `LowRankEmbedding` is replaced by a `FoldedLookup` of its factor `A`, and
    its factor `B` is multiplied into the kernel of the layer that consumes
    the embedding, where that layer is linear in its input:

    - `GlobalAveragePooling1D` (masked mean) then `Dense`: the pooling runs
      on the `rank`-wide rows and the `Dense` kernel becomes `B @ W`;
    - `LSTM`, `GRU`, `SimpleRNN` (also wrapped in `Bidirectional`): input
      kernel `B @ W_in`;
    - `Conv1D` (`groups=1`): kernel `B @ K[j]` at every tap;
    - `Dense` applied per token: kernel `B @ W`.

    Dropout and noise layers in between are looked through (they are the
    identity at inference). Masks are unchanged: the lookup masks id 0
    exactly as the embedding did. Any other consumer receives `A[ids] @ B`
    from a bias-free `Dense` holding `B`, i.e. the factorized form is kept
    for it; this is recorded, not raised. If the folded weights would be
    larger than the original ones, the original model is returned.

    The returned model shares no variables with `model`, which is left
    untouched. It computes the same outputs up to float rounding, and is
    meant for inference and export.

    Args:
        model: A built Functional or Sequential `keras.Model`.

    Returns:
        `(folded_model, FoldReport)`.

    Example:

    ```python
    folded, report = keras_lowrank.fold_projections(model)
    print(report)
    np.testing.assert_allclose(folded(ids), model(ids), atol=1e-5)
    ```
    """
    if not isinstance(model, keras.Model) or not model.built:
        raise ValueError(
            "Expected `model` to be a built keras.Model, received: "
            f"model={model!r}"
        )
    before = weight_bytes(model)
    if not any(is_low_rank_embedding(l) for l in _all_layers(model)):
        return model, FoldReport([], False, before, before, "no LowRankEmbedding")
    folder = _Folder()
    if isinstance(model, keras.Sequential):
        new_model = _rebuild_sequential(model, folder)
    elif _is_functional(model):
        new_model = keras.models.clone_model(
            model, clone_function=lambda layer: layer, call_function=folder
        )
    else:
        return model, FoldReport(
            [],
            False,
            before,
            before,
            f"a subclassed model ({type(model).__name__}) has no graph to rebuild",
        )
    records = folder.finish()
    after = weight_bytes(new_model)
    if not any(r.folded for r in records):
        return model, FoldReport(records, False, before, before, "no foldable consumer")
    if after > before:
        return model, FoldReport(
            records,
            False,
            before,
            before,
            f"folded weights would be larger ({after:,} > {before:,} bytes)",
        )
    return new_model, FoldReport(records, True, before, after)


class _Deferred:
    """A symbolic tensor known to equal `factor @ projection`."""

    def __init__(self, factor, projection, embedding, project):
        self.factor = factor  # KerasTensor of width rank
        self.projection = projection  # numpy [rank, output_dim]
        self.embedding = embedding  # layer name
        self.project = project  # Dense layer holding B (the fallback)
        self.pooled = False


class _Folder:
    """The `call_function` of `clone_model` that does the folding."""

    def __init__(self):
        self.records = []
        self._deferred = {}
        self._lookups = {}
        self._folded_layers = {}
        # Outputs of embeddings whose factors cannot be read (int4), by id:
        # `[embedding name, reason, whether a consumer was recorded]`.
        self._unread = {}

    def finish(self):
        """The records, with unreadable embeddings that fed no layer."""
        for name, reason, consumed in self._unread.values():
            if not consumed:
                self.records.append(FoldRecord(name, None, "kept", False, reason))
        return self.records

    def __call__(self, layer, *args, **kwargs):
        if is_low_rank_embedding(layer):
            return self._call_embedding(layer, *args, **kwargs)
        for tensor in keras.tree.flatten((args, kwargs)):
            unread = self._unread.get(id(tensor))
            if unread is not None:
                unread[2] = True
                self.records.append(
                    FoldRecord(unread[0], layer.name, "kept", False, unread[1])
                )
        deferred = self._deferred.get(id(args[0])) if args else None
        if deferred is None:
            # Any other input that carries a deferred projection receives the
            # projected (materialized) tensor: the factorized fallback.
            for tensor in keras.tree.flatten((args, kwargs)):
                d = self._deferred.get(id(tensor))
                if d is not None:
                    self._keep(d, layer, "it takes several inputs")
            return layer(*args, **kwargs)
        return self._call_consumer(deferred, layer, *args, **kwargs)

    def _call_embedding(self, layer, *args, **kwargs):
        key = id(layer)
        if key not in self._lookups:
            read = factors(layer)
            if read is None:
                self._lookups[key] = None
            else:
                lookup, scale, projection = read
                lookup_layer = FoldedLookup(
                    layer.input_dim,
                    layer.rank,
                    mask_zero=getattr(layer, "mask_zero", False),
                    quantized=scale is not None,
                    name=layer.name,
                    dtype=_float_policy(layer),
                )
                lookup_layer.build()
                lookup_layer.lookup.assign(lookup)
                if scale is not None:
                    lookup_layer.lookup_scale.assign(scale)
                project = keras.layers.Dense(
                    layer.output_dim,
                    use_bias=False,
                    name=f"{layer.name}_projection",
                    dtype=_float_policy(layer),
                )
                project.build((None, layer.rank))
                project.kernel.assign(projection)
                self._lookups[key] = (lookup_layer, projection, project)
        entry = self._lookups[key]
        if entry is None:
            out = layer(*args, **kwargs)
            self._unread[id(out)] = [layer.name, _unread_reason(layer), False]
            return out
        lookup_layer, projection, project = entry
        factor = lookup_layer(*args, **kwargs)
        return self._defer(_Deferred(factor, projection, layer.name, project))

    def _defer(self, deferred):
        out = deferred.project(deferred.factor)
        self._deferred[id(out)] = deferred
        return out

    def _call_consumer(self, d, layer, *args, **kwargs):
        rest = args[1:]
        if getattr(layer, "quantization_mode", None) is not None:
            self._keep(d, layer, "the consumer is quantized")
            return layer(*args, **kwargs)
        if isinstance(layer, _IDENTITY_AT_INFERENCE):
            out = _fresh(layer)(d.factor, *rest, **kwargs)
            new = _Deferred(out, d.projection, d.embedding, d.project)
            new.pooled = d.pooled
            return self._defer(new)
        if _is_mean_pooling(layer) and not d.pooled:
            # Masked mean pooling is linear over tokens, so it commutes with
            # the projection; what follows decides whether B folds further.
            out = _fresh(layer)(d.factor, *rest, **kwargs)
            new = _Deferred(out, d.projection, d.embedding, d.project)
            new.pooled = True
            return self._defer(new)
        folded = self._fold_layer(layer, d)
        if isinstance(folded, str):
            self._keep(d, layer, folded)
            return layer(*args, **kwargs)
        kind, new_layer = folded
        if d.pooled and kind == "dense":
            kind = "pooled_dense"
        self.records.append(FoldRecord(d.embedding, layer.name, kind, True))
        return new_layer(d.factor, *rest, **kwargs)

    def _fold_layer(self, layer, d):
        """Returns `(kind, folded layer)`, or a string saying why not."""
        key = (id(layer), id(d.project))
        if key in self._folded_layers:
            return self._folded_layers[key]
        B = d.projection
        rank = B.shape[0]
        result = None
        if isinstance(layer, keras.layers.Dense):
            new = _rebuilt(layer, (None, rank))
            _copy_weights(layer, new, {id(layer.kernel): B @ _np(layer.kernel)})
            result = ("dense", new)
        elif isinstance(layer, keras.layers.Conv1D) and not isinstance(
            layer, keras.layers.Conv1DTranspose
        ):
            if layer.groups != 1:
                result = f"a Conv1D with groups={layer.groups} does not fold"
            elif layer.data_format != "channels_last":
                result = f"a Conv1D with data_format={layer.data_format!r} does not fold"
            else:
                new = _rebuilt(layer, (None, None, rank))
                kernel = np.einsum("rd,kdf->krf", B, _np(layer.kernel))
                _copy_weights(layer, new, {id(layer.kernel): kernel})
                result = ("conv1d", new)
        elif isinstance(layer, _RECURRENT):
            new = _rebuilt(layer, (None, None, rank))
            kernel = layer.cell.kernel
            _copy_weights(layer, new, {id(kernel): B @ _np(kernel)})
            result = ("recurrent", new)
        elif isinstance(layer, keras.layers.Bidirectional) and isinstance(
            layer.forward_layer, _RECURRENT
        ) and isinstance(layer.backward_layer, _RECURRENT):
            new = _rebuilt(layer, (None, None, rank))
            replace = {
                id(layer.forward_layer.cell.kernel): B
                @ _np(layer.forward_layer.cell.kernel),
                id(layer.backward_layer.cell.kernel): B
                @ _np(layer.backward_layer.cell.kernel),
            }
            _copy_weights(layer, new, replace)
            result = ("recurrent", new)
        elif _is_masked_conv_block(layer):
            new = _rebuilt(layer, (None, None, rank))
            kernel = np.einsum("rd,kdf->krf", B, _np(layer.conv.kernel))
            _copy_weights(layer, new, {id(layer.conv.kernel): kernel})
            result = ("conv1d", new)
        else:
            result = (
                f"{type(layer).__name__} is not a linear consumer the "
                "projection folds into"
            )
        self._folded_layers[key] = result
        return result

    def _keep(self, d, layer, reason):
        self.records.append(FoldRecord(d.embedding, layer.name, "kept", False, reason))


def _unread_reason(layer):
    """Why `factors(layer)` could not read a quantized low-rank embedding."""
    mode = getattr(layer, "quantization_mode", None)
    if mode == "int4":
        return "int4 factors are not folded: unpacking them would double the table"
    return f"factors quantized with mode {mode!r} are not folded"


def _is_mean_pooling(layer):
    """Masked mean over time, channels last: linear in its input."""
    if isinstance(layer, keras.layers.GlobalAveragePooling1D):
        return layer.data_format == "channels_last"
    # keras_lowrank.models' pooling (zeros for empty texts), matched by name
    # so that export does not depend on the models package.
    return type(layer).__name__ == "MaskedGlobalAveragePooling1D"


def _is_masked_conv_block(layer):
    """keras_lowrank.models' masked Conv1D + max-over-time block.

    It zeroes masked steps and pads with zeros before its `conv`, both
    linear, so `B` folds into `conv`'s kernel like a plain Conv1D.
    """
    conv = getattr(layer, "conv", None)
    return (
        type(layer).__name__ == "MaskedConv1DMaxPooling"
        and isinstance(conv, keras.layers.Conv1D)
        and conv.groups == 1
    )


def _float_policy(layer):
    """The layer's dtype policy without its quantization mode."""
    policy = layer.dtype_policy
    if getattr(policy, "quantization_mode", None) is None:
        return policy
    # Quantized policies are named "<mode>_from_<source policy>".
    return keras.dtype_policies.get(policy.name.split("_from_", 1)[-1])


def _rebuild_sequential(model, folder):
    inputs = keras.Input(
        batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype
    )
    x = inputs
    for layer in model.layers:
        x = folder(layer, x)
    return keras.Model(inputs, x, name=model.name)


def _is_functional(model):
    return _keras_private.is_functional(model)


def _all_layers(model):
    yield from _keras_private.flatten_layers(model, include_self=False)


def _fresh(layer):
    """A new, unbuilt layer of the same configuration."""
    # Wrapped layers (Bidirectional) serialize their sublayers with a build
    # config, which would build them for the old input width: drop it.
    return layer.__class__.from_config(_without_build_config(layer.get_config()))


def _without_build_config(config):
    if isinstance(config, dict):
        return {
            k: _without_build_config(v)
            for k, v in config.items()
            if k not in ("build_config", "compile_config")
        }
    if isinstance(config, list):
        return [_without_build_config(v) for v in config]
    return config


def _rebuilt(layer, input_shape):
    """A new layer with `layer`'s configuration, built for `input_shape`."""
    new = _fresh(layer)
    new.build(input_shape)
    return new


def _np(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), "float32")


def _copy_weights(source, target, replace):
    """Copies `source`'s weights into `target`, replacing some by id."""
    source_weights = source.weights
    target_weights = target.weights
    if len(source_weights) != len(target_weights):
        raise ValueError(
            f"Cannot fold into {source.name}: weight structure changed "
            f"({len(source_weights)} vs {len(target_weights)} variables)"
        )
    for src, dst in zip(source_weights, target_weights):
        value = replace.get(id(src))
        if value is None:
            value = keras.ops.convert_to_numpy(src)
        dst.assign(value)
