"""`LowRankReversibleEmbedding`: a factorized `keras.layers.ReversibleEmbedding`.

This module holds the layer and nothing else: the lookup of ids in a
factorized table `A @ B` (inherited from `LowRankEmbedding`), and the reverse
projection of hidden states to vocabulary logits through the same factors
(tied) or through a second pair of factors (untied), with its soft cap,
reverse dtype, quantization and serialization. It must not walk or rebuild
models (that is the surgery's job) and it must not implement linear algebra
of its own (`keras_lowrank.decomposition`).
"""

import math

import numpy as np
from keras import KerasTensor
from keras import backend
from keras import initializers
from keras import layers
from keras import ops
from keras import quantizers
from keras.saving import register_keras_serializable

from keras_lowrank import decomposition
from keras_lowrank.layers import storage as storage_lib
from keras_lowrank.layers.low_rank_embedding import LowRankEmbedding
from keras_lowrank.layers.low_rank_embedding import _check_int4_block_size
from keras_lowrank.layers.low_rank_embedding import _is_ragged
from keras_lowrank.layers.low_rank_embedding import _is_sparse
from keras_lowrank.layers.low_rank_embedding import _SUPPORTED_QUANTIZATION_MODES


@register_keras_serializable(package="keras_lowrank")
class LowRankReversibleEmbedding(LowRankEmbedding):
    """A `keras.layers.ReversibleEmbedding` whose table is `A @ B`.

    The drop-in replacement for `keras.layers.ReversibleEmbedding` (the token
    table of KerasHub models, often tied to the output logits). Called on
    ids, it is a `LowRankEmbedding`: rows of `lookup` `A` `(input_dim, rank)`
    times `projection` `B` `(rank, output_dim)`. Called with `reverse=True`
    on hidden states `h` of width `output_dim`, it returns logits over the
    vocabulary:

    - tied (`tie_weights=True`, default): `(h @ B^T) @ A^T`, the product
      with the transposed table `E^T = B^T A^T` computed right to left, so
      the `input_dim x output_dim` table is never formed and the cost is
      `rank * (input_dim + output_dim)` per position instead of
      `input_dim * output_dim`;
    - untied (`tie_weights=False`): `ReversibleEmbedding`'s separate
      `(output_dim, input_dim)` kernel `K` is factorized on its own,
      `K^T ~ reverse_lookup @ reverse_projection` with shapes
      `(input_dim, rank)` and `(rank, output_dim)`, and the logits are
      `(h @ reverse_projection^T) @ reverse_lookup^T`.

    The call contract is `ReversibleEmbedding`'s: `logit_soft_cap` applies
    `tanh(logits / cap) * cap`, `reverse_dtype` is the dtype of the reverse
    product (defaults to the compute dtype; ignored once quantized, as in
    Keras), the mask of `mask_zero` is attached to the forward output in
    `call` (`compute_mask` returns `None`, so a reverse call carries no
    mask). `quantize("int8")` / `quantize("int4")` quantizes every factor
    like `LowRankEmbedding.quantize` (codes of `A` with one scale per row,
    `B` int8 with one scale per column); the reverse path multiplies the
    hidden states by the codes of `B` (optionally quantizing them with the
    config's activation quantizer, `inputs_quantizer`, as Keras does) and
    the result by the codes of `A`, rescaling per logit: nothing is
    dequantized to a full table.

    Example:

    ```python
    layer = keras_lowrank.LowRankReversibleEmbedding(32_000, 512, rank=64)
    hidden = layer(token_ids)                    # (batch, seq, 512)
    logits = layer(hidden, reverse=True)         # (batch, seq, 32_000)

    # From a trained (tied or untied) ReversibleEmbedding:
    small = keras_lowrank.LowRankReversibleEmbedding.from_embedding(
        backbone.token_embedding, compression=0.9
    )
    ```

    Args:
        input_dim: Integer. Size of the vocabulary.
        output_dim: Integer. Dimension of the dense embedding.
        rank: Integer. Inner dimension of every factorization (it must save
            parameters, see `LowRankEmbedding`).
        tie_weights: Boolean, whether the reverse projection uses the
            embedding factors (`True`) or its own factors.
        reverse_dtype: Optional float dtype of the reverse projection.
            Defaults to the layer's compute dtype.
        logit_soft_cap: Optional positive finite float, the soft cap of
            reverse logits.
        reverse_lookup_initializer: Initializer of `reverse_lookup`
            (untied only). Defaults to `lookup_initializer`.
        reverse_projection_initializer: Initializer of `reverse_projection`
            (untied only). Defaults to `projection_initializer`.
        **kwargs: `LowRankEmbedding` arguments (`lookup_initializer`,
            `mask_zero`, `weights`, `quantization_config`, ...) and base
            layer keyword arguments (`name`, `dtype`, `trainable`, ...).
            `weights` holds `[lookup, projection]`, plus
            `[reverse_lookup, reverse_projection]` when untied.

    Call arguments:
        inputs: Integer ids, or with `reverse=True` a float tensor whose
            last axis is `output_dim`.
        reverse: Boolean, project to vocabulary logits. Defaults to `False`.

    Input shape:
        Ids `(d1, ..., dn)`; reverse: `(d1, ..., dn, output_dim)`.

    Output shape:
        `(d1, ..., dn, output_dim)`; reverse: `(d1, ..., dn, input_dim)`.

    References:
        - [Press and Wolf, 2017. Using the Output Embedding to Improve
          Language Models](https://arxiv.org/abs/1608.05859)
        - [Acharya et al., 2019. Online Embedding Compression for Text
          Classification using Low Rank Matrix Factorization](
          https://arxiv.org/abs/1811.00641)
    """

    def __init__(
        self,
        input_dim,
        output_dim,
        rank,
        tie_weights=True,
        reverse_dtype=None,
        logit_soft_cap=None,
        reverse_lookup_initializer=None,
        reverse_projection_initializer=None,
        **kwargs,
    ):
        if not isinstance(tie_weights, (bool, np.bool_)):
            raise ValueError(
                "Expected `tie_weights` to be a boolean, received: "
                f"tie_weights={tie_weights!r} "
                f"(of type {type(tie_weights).__name__})"
            )
        if logit_soft_cap is not None and not (
            isinstance(logit_soft_cap, (int, float, np.integer, np.floating))
            and not isinstance(logit_soft_cap, (bool, np.bool_))
            and math.isfinite(logit_soft_cap)
            and logit_soft_cap > 0
        ):
            raise ValueError(
                "Expected `logit_soft_cap` to be None or a positive finite "
                f"number, received: logit_soft_cap={logit_soft_cap!r}"
            )
        if reverse_dtype is not None:
            reverse_dtype = _float_dtype("reverse_dtype", reverse_dtype)
        weights = kwargs.pop("weights", None)
        super().__init__(input_dim, output_dim, rank, **kwargs)
        self.tie_weights = bool(tie_weights)
        self.reverse_dtype = reverse_dtype
        self.logit_soft_cap = (
            None if logit_soft_cap is None else float(logit_soft_cap)
        )
        self.reverse_lookup_initializer = (
            None
            if reverse_lookup_initializer is None
            else initializers.get(reverse_lookup_initializer)
        )
        self.reverse_projection_initializer = (
            None
            if reverse_projection_initializer is None
            else initializers.get(reverse_projection_initializer)
        )
        if weights is not None:
            expected = 2 if self.tie_weights else 4
            if not (
                isinstance(weights, (list, tuple)) and len(weights) == expected
            ):
                raise ValueError(
                    f"Expected `weights` to be a list of {expected} arrays "
                    "(`[lookup, projection]`"
                    + ("" if self.tie_weights else
                       " + `[reverse_lookup, reverse_projection]`")
                    + f"), received: weights={repr(weights)[:200]}"
                )
            self.build()
            self.set_weights(list(weights))

    def build(self, input_shape=None):
        if self.built:
            return
        # Quantized policies build every factor in `quantized_build`.
        super().build(input_shape)
        if not self.tie_weights and not self.quantization_mode:
            self.reverse_lookup = self.add_weight(
                name="reverse_lookup",
                shape=(self.input_dim, self.rank),
                initializer=self.reverse_lookup_initializer
                or self.lookup_initializer,
                trainable=True,
            )
            self.reverse_projection = self.add_weight(
                name="reverse_projection",
                shape=(self.rank, self.output_dim),
                initializer=self.reverse_projection_initializer
                or self.projection_initializer,
                trainable=True,
            )

    def dequantized_reverse_factors(self):
        """`(A', B')` of the reverse projection as float32 tensors.

        The logits are `(h @ B'^T) @ A'^T`; for a tied layer these are the
        embedding factors (`dequantized_factors()`).
        """
        if self.tie_weights:
            return self.dequantized_factors()
        if not self.built:
            raise AttributeError(
                "You must build the layer before accessing its factors."
            )
        if self.quantization_mode is None:
            return self.reverse_lookup, self.reverse_projection
        lookup = ops.divide(
            ops.cast(self._lookup_codes(self.reverse_lookup), "float32"),
            ops.expand_dims(
                ops.cast(self.reverse_lookup_scale, "float32"), -1
            ),
        )
        projection = ops.divide(
            ops.cast(self.reverse_projection, "float32"),
            ops.cast(self.reverse_projection_scale, "float32"),
        )
        return lookup, projection

    def call(self, inputs, reverse=False):
        if reverse:
            return self._reverse(inputs)
        return self._embed_with_mask(inputs)

    def compute_mask(self, inputs, mask=None):
        # As in `ReversibleEmbedding`: the mask is attached in `call`, so
        # that a reverse call (float inputs) carries none.
        return None

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return (*input_shape[:-1], self.input_dim)
        return (*input_shape, self.output_dim)

    def compute_output_spec(self, inputs, reverse=False):
        if reverse:
            dtype = self.compute_dtype
            if self.reverse_dtype is not None and not self.quantization_mode:
                dtype = self.reverse_dtype
            return KerasTensor(
                self.compute_output_shape(inputs.shape, reverse=True),
                dtype=dtype,
            )
        return super().compute_output_spec(inputs)

    @classmethod
    def from_embedding(
        cls,
        embedding_layer,
        *,
        rank=None,
        compression=None,
        energy=None,
        split="balanced",
        row_weights=None,
        name=None,
        **kwargs,
    ):
        """Builds a `LowRankReversibleEmbedding` from a trained embedding.

        The embedding table is factorized exactly as in
        `LowRankEmbedding.from_embedding` (same arguments, same SVD).
        `tie_weights`, `reverse_dtype` and `logit_soft_cap` are carried over
        from a `keras.layers.ReversibleEmbedding` (a plain `Embedding` gives
        a tied layer). An untied layer's reverse kernel `K`
        `(output_dim, input_dim)` is factorized on its own, at the same rank
        (with `energy`, the rank the embedding table needs), from the
        truncated SVD of `K^T`, weighted by the same `row_weights` (its rows
        are vocabulary ids too).

        Args:
            embedding_layer: A built, float `keras.layers.ReversibleEmbedding`
                or `keras.layers.Embedding`.
            rank: As in `LowRankEmbedding.from_embedding`.
            compression: As in `LowRankEmbedding.from_embedding`.
            energy: As in `LowRankEmbedding.from_embedding`.
            split: As in `LowRankEmbedding.from_embedding`.
            row_weights: As in `LowRankEmbedding.from_embedding`; also
                weights the rows of an untied reverse kernel.
            name: As in `LowRankEmbedding.from_embedding`.
            **kwargs: Other constructor arguments.

        Returns:
            A built `LowRankReversibleEmbedding`; its `factorization` dict
            also holds `reverse_energy` when untied.
        """
        for attribute in ("tie_weights", "reverse_dtype", "logit_soft_cap"):
            if hasattr(embedding_layer, attribute):
                kwargs.setdefault(attribute, getattr(embedding_layer, attribute))
        tied = kwargs.get("tie_weights", True)
        reverse = None
        if not tied:
            kernel = getattr(embedding_layer, "reverse_embeddings", None)
            if kernel is None or getattr(embedding_layer, "quantization_mode", None):
                raise ValueError(
                    "Expected an untied `embedding_layer` to hold a float "
                    "`reverse_embeddings` kernel, received: "
                    f"embedding_layer={embedding_layer!r} "
                    f"(of type {type(embedding_layer).__name__})"
                )
            if rank is None:
                # The embedding table decides the rank; both factorizations
                # then use it.
                table = decomposition.validate_table(
                    ops.convert_to_numpy(
                        ops.cast(embedding_layer.embeddings, "float32")
                    ),
                    name="embedding_layer.embeddings",
                )
                rank = decomposition.resolve_rank(
                    *table.shape,
                    compression=compression,
                    energy=energy,
                    singular_values=(
                        decomposition.singular_values(table)
                        if energy is not None
                        else None
                    ),
                )
                compression = energy = None
            reverse_table = decomposition.validate_table(
                ops.convert_to_numpy(ops.cast(kernel, "float32")).T,
                name="embedding_layer.reverse_embeddings",
            )
            reverse = decomposition.factorize_table(
                reverse_table, int(rank), split=split, row_weights=row_weights
            )
            # Initial values, as for the embedding factors (see
            # `LowRankEmbedding.from_embedding`); the configured
            # initializers are restored below.
            configured = (
                kwargs.pop("reverse_lookup_initializer", None),
                kwargs.pop("reverse_projection_initializer", None),
            )
            kwargs["reverse_lookup_initializer"] = storage_lib.array_initializer(
                np.asarray(reverse.lookup, "float32")
            )
            kwargs["reverse_projection_initializer"] = storage_lib.array_initializer(
                np.asarray(reverse.projection, "float32")
            )
        layer = super().from_embedding(
            embedding_layer,
            rank=rank,
            compression=compression,
            energy=energy,
            split=split,
            row_weights=row_weights,
            name=name,
            **kwargs,
        )
        if reverse is not None:
            layer.reverse_lookup_initializer = (
                None if configured[0] is None else initializers.get(configured[0])
            )
            layer.reverse_projection_initializer = (
                None if configured[1] is None else initializers.get(configured[1])
            )
            layer.factorization["reverse_energy"] = float(reverse.energy)
        return layer

    def to_embedding(self):
        """Returns a built `keras.layers.ReversibleEmbedding` holding `A @ B`.

        Same settings as `LowRankEmbedding.to_embedding`, plus
        `tie_weights`, `reverse_dtype` and `logit_soft_cap`; an untied
        layer's reverse kernel is `(A' @ B')^T`.
        """
        dense = super().to_embedding()
        embedding = layers.ReversibleEmbedding(
            self.input_dim,
            self.output_dim,
            tie_weights=self.tie_weights,
            mask_zero=self.mask_zero,
            reverse_dtype=self.reverse_dtype,
            logit_soft_cap=self.logit_soft_cap,
            activity_regularizer=self.activity_regularizer,
            trainable=self.trainable,
            dtype=dense.dtype_policy,
            name=self.name,
        )
        embedding.build()
        embedding.embeddings.assign(dense.embeddings)
        if not self.tie_weights:
            lookup, projection = self.dequantized_reverse_factors()
            embedding.reverse_embeddings.assign(
                ops.transpose(ops.matmul(lookup, projection))
            )
        return embedding

    # Quantization: the embedding factors through `LowRankEmbedding`, the
    # untied reverse factors by the very same code (a temporary
    # `LowRankEmbedding` holding them), so both pairs have one layout.

    def quantize(self, mode=None, type_check=True, config=None):
        """Quantizes every factor in place, see `LowRankEmbedding.quantize`.

        Untied reverse factors get the same layout as the embedding
        factors. The config's activation quantizer (Keras' default: abs-max
        per position) quantizes the hidden states of reverse calls, as in
        `keras.layers.ReversibleEmbedding`; a config without one leaves
        them in float.
        """
        if type_check and type(self) is not LowRankReversibleEmbedding:
            raise self._not_implemented_error(self.quantize)
        if mode not in _SUPPORTED_QUANTIZATION_MODES:
            raise self._quantization_mode_error(mode)
        reverse = None
        if not self.tie_weights:
            if mode == "int4":
                _check_int4_block_size(config, self.rank)
            twin = LowRankEmbedding(
                self.input_dim,
                self.output_dim,
                self.rank,
                weights=[
                    ops.convert_to_numpy(self.reverse_lookup),
                    ops.convert_to_numpy(self.reverse_projection),
                ],
            )
            twin.quantize(mode, config=config)
            reverse = [
                ops.convert_to_numpy(v)
                for v in (
                    twin.lookup,
                    twin.lookup_scale,
                    twin.projection,
                    twin.projection_scale,
                )
            ]
            del self.reverse_lookup
            del self.reverse_projection
        # Builds every quantized variable (`quantized_build` below) and
        # fills the embedding factors.
        super().quantize(mode, type_check=False, config=config)
        if reverse is not None:
            for name, value in zip(_REVERSE_QUANTIZED, reverse):
                getattr(self, name).assign(value)

    def quantized_build(self, embeddings_shape, mode, config=None):
        super().quantized_build(embeddings_shape, mode, config)
        self.inputs_quantizer = (
            quantizers.QuantizationConfig.activation_quantizer_or_default(
                config, quantizers.AbsMaxQuantizer(axis=-1)
            )
        )
        if self.tie_weights:
            return
        width = self.rank if mode == "int8" else (self.rank + 1) // 2
        self.reverse_lookup = self.add_weight(
            name="reverse_lookup",
            shape=(self.input_dim, width),
            initializer="zeros",
            dtype="int8",
            trainable=False,
        )
        self.reverse_lookup_scale = self.add_weight(
            name="reverse_lookup_scale",
            shape=(self.input_dim,),
            initializer="ones",
            trainable=False,
        )
        self.reverse_projection = self.add_weight(
            name="reverse_projection",
            shape=(self.rank, self.output_dim),
            initializer="zeros",
            dtype="int8",
            trainable=False,
        )
        self.reverse_projection_scale = self.add_weight(
            name="reverse_projection_scale",
            shape=(self.output_dim,),
            initializer="ones",
            trainable=False,
        )

    def _int8_call(self, inputs, reverse=False, training=None):
        if reverse:
            return self._reverse(inputs)
        return self._embed_with_mask(inputs)

    def _int4_call(self, inputs, reverse=False, training=None):
        if reverse:
            return self._reverse(inputs)
        return self._embed_with_mask(inputs)

    @property
    def variable_serialization_spec(self):
        spec = {
            mode: list(names)
            for mode, names in super().variable_serialization_spec.items()
        }
        if not self.tie_weights:
            spec[None] += ["reverse_lookup", "reverse_projection"]
            for mode in _SUPPORTED_QUANTIZATION_MODES:
                spec[mode] += list(_REVERSE_QUANTIZED)
        return spec

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tie_weights": self.tie_weights,
                "reverse_dtype": self.reverse_dtype,
                "logit_soft_cap": self.logit_soft_cap,
            }
        )
        for name in (
            "reverse_lookup_initializer",
            "reverse_projection_initializer",
        ):
            if getattr(self, name) is not None:
                config[name] = initializers.serialize(getattr(self, name))
        return config

    def _embed_with_mask(self, inputs):
        outputs = self._embed(inputs)
        if self.mask_zero and not (_is_ragged(inputs) or _is_sparse(inputs)):
            _set_keras_mask(outputs, ops.not_equal(inputs, 0))
        return outputs

    def _reverse(self, inputs):
        """Logits `(h @ B^T) @ A^T`, never forming the table."""
        if self.quantization_mode is None:
            lookup, projection = (
                (self.lookup, self.projection)
                if self.tie_weights
                else (self.reverse_lookup, self.reverse_projection)
            )
            dtype = self.reverse_dtype or self.compute_dtype
            hidden = ops.cast(inputs, dtype)
            hidden = ops.matmul(hidden, ops.transpose(ops.cast(projection, dtype)))
            logits = ops.matmul(hidden, ops.transpose(ops.cast(lookup, dtype)))
        else:
            logits = self._quantized_reverse(inputs)
        if self.logit_soft_cap is not None:
            cap = self.logit_soft_cap
            logits = ops.multiply(ops.tanh(ops.divide(logits, cap)), cap)
        return logits

    def _quantized_reverse(self, inputs):
        # h @ B^T with B = codes_B / scale_B (per column, i.e. per entry of
        # h): (h / scale_B) @ codes_B^T. Then z @ A^T with
        # A = codes_A / scale_A (per row, i.e. per logit): the product with
        # the codes, divided by scale_A.
        names = "lookup", "lookup_scale", "projection", "projection_scale"
        if not self.tie_weights:
            names = _REVERSE_QUANTIZED
        lookup, lookup_scale, projection, projection_scale = (
            getattr(self, name) for name in names
        )
        dtype = self.compute_dtype
        hidden = ops.divide(
            ops.cast(inputs, dtype), ops.cast(projection_scale, dtype)
        )
        if self.inputs_quantizer:
            hidden, hidden_scale = self.inputs_quantizer(hidden)
            hidden = ops.matmul(hidden, ops.transpose(projection))
            hidden = ops.divide(
                ops.cast(hidden, dtype), ops.cast(hidden_scale, dtype)
            )
        else:
            hidden = ops.matmul(
                hidden, ops.transpose(ops.cast(projection, dtype))
            )
        codes = ops.cast(self._lookup_codes(lookup), dtype)
        logits = ops.matmul(hidden, ops.transpose(codes))
        return ops.divide(logits, ops.cast(lookup_scale, dtype))


# Quantized variables of the untied reverse factors, in saving order.
_REVERSE_QUANTIZED = (
    "reverse_lookup",
    "reverse_lookup_scale",
    "reverse_projection",
    "reverse_projection_scale",
)


def _float_dtype(name, dtype):
    """`dtype` as Keras' standard name, which must be a float dtype."""
    try:
        standard = backend.standardize_dtype(dtype)
    except (TypeError, ValueError):
        standard = None
    if standard is None or not backend.is_float_dtype(standard):
        raise ValueError(
            f"Expected `{name}` to be None or a float dtype (such as "
            f'"float32" or "bfloat16"), received: {name}={dtype!r}'
        )
    return standard


def _set_keras_mask(outputs, mask):
    # How `ReversibleEmbedding` attaches its mask in `call`: private in Keras.
    from keras_lowrank import _keras_private

    _keras_private.set_keras_mask(outputs, mask)
