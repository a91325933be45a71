"""`LowRankEmbedding`: an `Embedding` whose table is a product of two factors.

This module holds the layer and nothing else: the lookup of integer ids in
a factorized table `A @ B`, its masking, dtype-policy, serialization and
quantization behaviour, and the conversions to and from a plain
`keras.layers.Embedding`. It must not walk or rebuild models (that is the
surgery's job) and it must not implement linear algebra of its own: the
truncated SVD and the rank choice live in `keras_lowrank.decomposition`.
"""

import warnings

import numpy as np
from keras import KerasTensor
from keras import backend
from keras import constraints
from keras import dtype_policies
from keras import initializers
from keras import layers
from keras import ops
from keras import quantizers
from keras import regularizers
from keras import saving
from keras.quantizers import QuantizationConfig
from keras.saving import register_keras_serializable

from keras_lowrank import decomposition
from keras_lowrank.layers import storage as storage_lib
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import table_bytes

# Variance of one entry of `keras.layers.Embedding`'s default table,
# `RandomUniform(-0.05, 0.05)`: limit**2 / 3.
_EMBEDDING_INIT_VARIANCE = 0.05**2 / 3.0

_SUPPORTED_QUANTIZATION_MODES = ("int8", "int4")


@register_keras_serializable(package="keras_lowrank")
class LowRankEmbedding(layers.Layer):
    """Turns integer ids into dense vectors through a factorized table.

    A drop-in replacement for `keras.layers.Embedding` whose
    `(input_dim, output_dim)` table is stored as the product of two
    trainable factors: `lookup` `A` of shape `(input_dim, rank)`, whose rows
    are gathered by id, and `projection` `B` of shape `(rank, output_dim)`,
    shared by every id. The layer stores `rank * (input_dim + output_dim)`
    numbers instead of `input_dim * output_dim`.

    The call gathers the rows of `A` for the given ids and multiplies them by
    `B`; the dense `input_dim x output_dim` table is never built while
    calling. It follows the call contract of `keras.layers.Embedding`:
    integer ids of any shape (other dtypes are cast to `int32`), dense,
    `tf.SparseTensor` (positions absent from the sparse ids embed id 0, as
    `Embedding` does on the TensorFlow backend; the output is dense) or
    `tf.RaggedTensor` (the output is ragged), `mask_zero`, and dtype
    policies: under `"mixed_bfloat16"` both factors are stored in float32
    and the gathered rows and `B` are cast to bfloat16 for the product.

    The most common way to obtain one is
    `LowRankEmbedding.from_embedding(trained_embedding, compression=0.9)`,
    which starts from the best rank-`r` approximation of a trained table.
    It also implements Keras' quantization protocol (`layer.quantize("int8")`,
    `layer.quantize("int4")`, and `model.quantize(...)`), see `quantize()`.

    Default initializers: both factors are drawn from
    `RandomUniform(-l, l)` with `l = (0.0075 / rank) ** 0.25`. An entry of
    `A @ B` is then a sum of `rank` products of independent entries with
    variance `l**2 / 3` each, so its variance is `rank * l**4 / 9 =
    0.05**2 / 3`: the same scale as `Embedding`'s default
    `RandomUniform(-0.05, 0.05)` table, whatever the rank, with the scale
    split evenly between the factors so neither starts with vanishing
    gradients.

    Example:

    ```python
    layer = keras_lowrank.LowRankEmbedding(10_000, 300, rank=30)
    ids = np.random.randint(10_000, size=(32, 40))
    layer(ids).shape  # (32, 40, 300)

    # From a trained embedding, keeping 10% of its parameters:
    small = keras_lowrank.LowRankEmbedding.from_embedding(
        trained_embedding, compression=0.9
    )
    ```

    Args:
        input_dim: Integer. Size of the vocabulary, i.e. maximum integer
            index + 1.
        output_dim: Integer. Dimension of the dense embedding.
        rank: Integer. Inner dimension of the factorization. It must save
            parameters: `rank * (input_dim + output_dim) < input_dim *
            output_dim`.
        lookup_initializer: Initializer for `lookup` (`A`). Defaults to the
            rank-scaled uniform initializer described above.
        projection_initializer: Initializer for `projection` (`B`). Defaults
            to the rank-scaled uniform initializer described above.
        lookup_regularizer: Regularizer applied to `lookup`.
        projection_regularizer: Regularizer applied to `projection`.
        lookup_constraint: Constraint applied to `lookup`.
        projection_constraint: Constraint applied to `projection`.
        mask_zero: Boolean, whether id 0 is a padding value to be masked
            out, exactly as in `keras.layers.Embedding`.
        weights: Optional list `[lookup, projection]` of initial values of
            shapes `(input_dim, rank)` and `(rank, output_dim)`.
        quantization_config: Optional `keras.quantizers.QuantizationConfig`,
            used when the layer is rebuilt in a quantized dtype policy.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, `trainable`,
            `activity_regularizer`, ...).

    Input shape:
        Integer tensor of any shape `(d1, ..., dn)`: dense, sparse or ragged.

    Output shape:
        `(d1, ..., dn, output_dim)`; ragged for ragged ids.

    References:
        - [Acharya et al., 2019. Online Embedding Compression for Text
          Classification using Low Rank Matrix Factorization](
          https://arxiv.org/abs/1811.00641) (AAAI 2019)
        - [Eckart and Young, 1936. The approximation of one matrix by
          another of lower rank](https://doi.org/10.1007/BF02288367)
    """

    def __init__(
        self,
        input_dim,
        output_dim,
        rank,
        lookup_initializer=None,
        projection_initializer=None,
        lookup_regularizer=None,
        projection_regularizer=None,
        lookup_constraint=None,
        projection_constraint=None,
        mask_zero=False,
        weights=None,
        quantization_config=None,
        **kwargs,
    ):
        storage_lib.check_positive_int("input_dim", input_dim)
        storage_lib.check_positive_int("output_dim", output_dim)
        storage_lib.check_positive_int("rank", rank)
        useful = decomposition.max_useful_rank(int(input_dim), int(output_dim))
        if rank > useful:
            raise ValueError(
                f"Expected `rank` to save parameters, received: rank={rank}. "
                f"A rank-{rank} factorization of a {input_dim}x{output_dim} "
                f"table stores {rank * (input_dim + output_dim)} numbers, "
                f"the dense table {input_dim * output_dim}: it saves "
                f"nothing. The largest rank that saves parameters is "
                f"{useful}"
                + (
                    " (none does for this shape)."
                    if useful < 1
                    else f"; use rank <= {useful}."
                )
            )
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise ValueError(
                "Expected `mask_zero` to be a boolean, received: "
                f"mask_zero={mask_zero!r} (of type {type(mask_zero).__name__})"
            )
        if quantization_config is not None and not isinstance(
            quantization_config, QuantizationConfig
        ):
            raise ValueError(
                "Expected `quantization_config` to be None or a "
                "`keras.quantizers.QuantizationConfig`, received: "
                f"quantization_config={quantization_config!r}"
            )
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.rank = int(rank)
        self.lookup_initializer = initializers.get(
            lookup_initializer or _default_factor_initializer(rank)
        )
        self.projection_initializer = initializers.get(
            projection_initializer or _default_factor_initializer(rank)
        )
        self.lookup_regularizer = regularizers.get(lookup_regularizer)
        self.projection_regularizer = regularizers.get(projection_regularizer)
        self.lookup_constraint = constraints.get(lookup_constraint)
        self.projection_constraint = constraints.get(projection_constraint)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        # Like `Embedding`: the float32 factors are not auto-cast as a whole;
        # only the gathered rows and `B` are cast to the compute dtype.
        self.autocast = False
        self.quantization_config = quantization_config
        # Set by `from_embedding` for reports (singular values, energy kept).
        # Not saved with the layer.
        self.factorization = None

        if weights is not None:
            if not (isinstance(weights, (list, tuple)) and len(weights) == 2):
                received = getattr(weights, "shape", None)
                received = (
                    f"an array of shape {tuple(received)}"
                    if received is not None
                    else repr(weights)[:200]
                )
                raise ValueError(
                    "Expected `weights` to be a list `[lookup, projection]` "
                    f"of two arrays, received: weights={received}"
                )
            self.build()
            self.set_weights(list(weights))

    def build(self, input_shape=None):
        if self.built:
            return
        if self.quantization_mode:
            self.quantized_build(
                (self.input_dim, self.output_dim),
                mode=self.quantization_mode,
                config=self.quantization_config,
            )
        else:
            self.lookup = self.add_weight(
                name="lookup",
                shape=(self.input_dim, self.rank),
                initializer=self.lookup_initializer,
                regularizer=self.lookup_regularizer,
                constraint=self.lookup_constraint,
                trainable=True,
            )
            self.projection = self.add_weight(
                name="projection",
                shape=(self.rank, self.output_dim),
                initializer=self.projection_initializer,
                regularizer=self.projection_regularizer,
                constraint=self.projection_constraint,
                trainable=True,
            )
        self.built = True

    @property
    def embeddings(self):
        """The dense table `A @ B`, `(input_dim, output_dim)`, in float32.

        For inspection and export only: `call` never builds it. On a
        quantized layer it is the product of the dequantized factors.
        """
        lookup, projection = self.dequantized_factors()
        return ops.matmul(lookup, projection)

    def dequantized_factors(self):
        """Returns `(A, B)` as float32 tensors, dequantized if needed.

        Returns:
            A tuple `(lookup, projection)` of shapes `(input_dim, rank)` and
            `(rank, output_dim)`. For an unquantized layer these are the
            variables themselves.
        """
        if not self.built:
            raise AttributeError(
                "You must build the layer before accessing its factors."
            )
        mode = self.quantization_mode
        if mode is None:
            return self.lookup, self.projection
        lookup = self._lookup_codes(self.lookup)
        lookup = ops.divide(
            ops.cast(lookup, "float32"),
            ops.expand_dims(ops.cast(self.lookup_scale, "float32"), -1),
        )
        projection = ops.divide(
            ops.cast(self.projection, "float32"),
            ops.cast(self.projection_scale, "float32"),
        )
        return lookup, projection

    def call(self, inputs):
        return self._embed(inputs)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def compute_output_spec(self, inputs):
        output_shape = self.compute_output_shape(inputs.shape)
        ragged = getattr(inputs, "ragged", False)
        return KerasTensor(
            output_shape, dtype=self.compute_dtype, ragged=ragged
        )

    def storage_bytes(self, breakdown=False):
        """Bytes needed to store this layer's state, counted honestly.

        Every variable counts at the size of its stored dtype: float32
        factors 4 bytes per entry, int8 codes 1 byte, packed int4 codes
        1 byte per two entries (an odd `rank` pads one nibble per row), and
        the float32 quantization scales 4 bytes each. Nothing else (no
        zero points) is stored.

        Args:
            breakdown: If `True`, return a dict `{variable name: bytes}`
                instead of the total.

        Returns:
            The total number of bytes (int), or the per-variable dict.
        """
        if not self.built:
            raise ValueError(
                "Cannot count the storage of a layer that isn't built. "
                f"Layer '{self.name}' is not built yet."
            )
        if not breakdown:
            return table_bytes(self)
        sizes = {}
        for variable in self.weights:
            itemsize = np.dtype(backend.standardize_dtype(variable.dtype))
            sizes[variable.name] = int(
                np.prod(variable.shape, dtype=np.int64) * itemsize.itemsize
            )
        return sizes

    def table_layout(self):
        """The `keras_lowrank.TableLayout` this layer stores (low rank)."""
        return TableLayout(
            input_dim=int(self.input_dim),
            output_dim=int(self.output_dim),
            rank=int(self.rank),
            storage=self.quantization_mode or "float32",
            untied_reverse=getattr(self, "tie_weights", True) is False,
        )

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
        """Builds a `LowRankEmbedding` from a trained `Embedding`.

        The factors come from the truncated SVD `E ~ U_r S_r V_r^T` of the
        embedding table, so `A @ B` is the best rank-`r` approximation of
        the table in Frobenius and spectral norm (Eckart-Young).

        Where the singular values go (`split`):
        - `"balanced"` (default): `A = U_r sqrt(S_r)`, `B = sqrt(S_r) V_r^T`.
          Both factors then have the same singular values, so neither
          dominates the gradients of the fine-tune that follows, an L2
          penalty acts on them symmetrically, and per-row int8/int4
          quantization of `A` sees rows on the scale of the table itself.
        - `"right"`: `A = U_r`, `B = S_r V_r^T` (orthonormal `A`, all the
          scale on the shared projection).

        What is carried over: `mask_zero`, the dtype policy, `trainable`
        and the `activity_regularizer` (it acts on the outputs, whose
        meaning is unchanged). The Embedding's `embeddings_regularizer` and
        `embeddings_constraint` are *not* carried over: a penalty or
        constraint on the table does not translate to the same penalty or
        constraint on each factor (an L2 penalty on both factors is a
        nuclear-norm penalty on the product, a non-negativity constraint on
        the factors restricts far more than one on the table). Pass
        `lookup_regularizer=...` etc. as keyword arguments to choose them.

        Args:
            embedding_layer: A built `keras.layers.Embedding`, not quantized.
            rank: Integer rank. Exactly one of `rank`, `compression`,
                `energy` must be given.
            compression: Float in (0, 1): the share of the table's
                parameters to remove; the rank is
                `floor((1 - compression) * V * d / (V + d))`, at least 1.
            energy: Float in (0, 1]: the smallest rank whose singular values
                keep this share of the table's squared Frobenius norm.
            split: `"balanced"` or `"right"`, see above.
            row_weights: Optional non-negative weights, one per row (for
                example token counts): fits the rows that matter most
                better (frequency-aware factorization).
            name: Name of the new layer. Defaults to the source's name, so
                the new layer can take its place in a model.
            **kwargs: Other `LowRankEmbedding` constructor arguments (for
                example `lookup_regularizer`).

        Returns:
            A built `LowRankEmbedding`. Its `factorization` attribute holds
            a dict with the table's `singular_values`, the `rank` and the
            `energy` kept.
        """
        if not isinstance(embedding_layer, layers.Embedding):
            raise ValueError(
                "Expected `embedding_layer` to be a `keras.layers.Embedding`, "
                f"received: embedding_layer={embedding_layer!r} "
                f"(of type {type(embedding_layer).__name__})"
            )
        if not embedding_layer.built:
            raise ValueError(
                "Expected `embedding_layer` to be built (its table must "
                "exist), received the unbuilt layer: "
                f"embedding_layer='{embedding_layer.name}'. Build it or call "
                "it on data first."
            )
        if embedding_layer.quantization_mode is not None:
            raise ValueError(
                "Expected `embedding_layer` to hold a float table, received a "
                f"layer quantized with mode "
                f"'{embedding_layer.quantization_mode}': "
                f"embedding_layer='{embedding_layer.name}'. Factorize the "
                "float layer first, then quantize the LowRankEmbedding "
                "(`layer.quantize(mode)`)."
            )
        table = ops.convert_to_numpy(
            ops.cast(embedding_layer.embeddings, "float32")
        )
        table = decomposition.validate_table(
            table, name="embedding_layer.embeddings"
        )
        input_dim, output_dim = table.shape
        singular_values = None
        if energy is not None:
            singular_values = decomposition.singular_values(table)
        rank = decomposition.resolve_rank(
            input_dim,
            output_dim,
            rank=rank,
            compression=compression,
            energy=energy,
            singular_values=singular_values,
        )
        factors = decomposition.factorize_table(
            table, rank, split=split, row_weights=row_weights
        )
        kwargs.setdefault("mask_zero", embedding_layer.mask_zero)
        kwargs.setdefault("dtype", embedding_layer.dtype_policy)
        kwargs.setdefault("trainable", embedding_layer.trainable)
        if embedding_layer.activity_regularizer is not None:
            kwargs.setdefault(
                "activity_regularizer", embedding_layer.activity_regularizer
            )
        layer = cls(
            input_dim,
            output_dim,
            int(factors.rank),
            name=name if name is not None else embedding_layer.name,
            **kwargs,
        )
        # Create the weights with the factors as their initial values rather
        # than assigning afterwards: under MultiWorkerMirroredStrategy only
        # initial values are broadcast from the chief, so every worker starts
        # from the chief's SVD even where BLAS builds differ. The configured
        # initializers are restored so `get_config()` is unchanged.
        configured = (layer.lookup_initializer, layer.projection_initializer)
        layer.lookup_initializer = storage_lib.array_initializer(factors.lookup)
        layer.projection_initializer = storage_lib.array_initializer(factors.projection)
        try:
            layer.build()
        finally:
            layer.lookup_initializer, layer.projection_initializer = configured
        layer.factorization = {
            "singular_values": np.asarray(factors.singular_values),
            "rank": int(factors.rank),
            "energy": float(factors.energy),
            "split": split,
        }
        return layer

    def to_embedding(self):
        """Returns a built `keras.layers.Embedding` holding `A @ B`.

        The new layer has the same name, `mask_zero`, `trainable` flag,
        activity regularizer and float dtype policy (for a quantized layer:
        the policy it was quantized from, and the table is the product of
        the dequantized factors). Regularizers and constraints of the factors
        are not carried over, for the reason given in `from_embedding`.

        Returns:
            A built `keras.layers.Embedding` whose outputs equal this
            layer's outputs up to float rounding.
        """
        if not self.built:
            raise ValueError(
                "Cannot convert a layer that isn't built to an Embedding. "
                f"Layer '{self.name}' is not built yet."
            )
        policy = self.dtype_policy
        if policy.quantization_mode is not None:
            # Quantized policies are named "<mode>_from_<float policy>".
            policy = dtype_policies.get(policy.name.split("_from_", 1)[1])
        embedding = layers.Embedding(
            self.input_dim,
            self.output_dim,
            mask_zero=self.mask_zero,
            activity_regularizer=self.activity_regularizer,
            trainable=self.trainable,
            dtype=policy,
            name=self.name,
        )
        embedding.build()
        embedding.embeddings.assign(self.embeddings)
        return embedding

    # Quantization: Keras' protocol, as `keras.layers.Embedding` implements
    # it. `Model.quantize` calls `quantize(mode, type_check=..., config=...)`
    # on every leaf layer; `Layer.__call__` routes to `quantized_call`, which
    # dispatches to `_int8_call` / `_int4_call`; the dtype policy becomes
    # `"<mode>_from_<policy>"`, so a saved model rebuilds the quantized
    # variables in `build()` before `load_own_variables` fills them.

    def quantize(self, mode=None, type_check=True, config=None):
        """Quantizes both factors in place (Keras' quantization protocol).

        Modes:
        - `"int8"`: `A` as int8 with one float32 scale per row (`[input_dim]`),
          `B` as int8 with one float32 scale per output column
          (`[output_dim]`). Symmetric abs-max quantization
          (`value = code / scale`), as `keras.layers.Embedding` does.
        - `"int4"`: `A` as int4 codes in `[-8, 7]`, packed two per byte along
          the rank axis like `Embedding`'s int4 table (shape
          `(input_dim, ceil(rank / 2))`), with one float32 scale per row;
          `B` as in `"int8"` (it is small and shared by every id, so its
          precision is worth the bytes). `A`'s rows hold only `rank`
          values, so they are always quantized per row, i.e. as one block
          per row: an `Int4QuantizationConfig` `block_size` of `None`, `-1`,
          Keras' default (128) or any size `>= rank` means exactly that; a
          smaller `block_size` (per-block scales within a row) is not
          supported and raises a `ValueError`.

        A custom `weight_quantizer` in `config` is applied to `A` (per row,
        like `Embedding`'s table); `B` always uses per-column abs-max int8.
        Gradients do not flow into quantized factors: a quantized layer is
        for inference and export.

        Args:
            mode: `"int8"` or `"int4"`. Other Keras modes raise
                `NotImplementedError` (which `model.quantize` turns into a
                warning and skips the layer, as for any Keras layer).
            type_check: Like Keras layers, refuse to quantize subclasses,
                whose call may differ.
            config: Optional `keras.quantizers.QuantizationConfig`.
        """
        if type_check and type(self) is not LowRankEmbedding:
            raise self._not_implemented_error(self.quantize)
        if mode not in _SUPPORTED_QUANTIZATION_MODES:
            raise self._quantization_mode_error(mode)

        if mode == "int4":
            _check_int4_block_size(config, self.rank)
        self.quantization_config = config
        if mode == "int4":
            value_range = (-8, 7)
        else:
            value_range = (-127, 127)
        weight_quantizer = QuantizationConfig.weight_quantizer_or_default(
            config,
            quantizers.AbsMaxQuantizer(
                axis=-1, value_range=value_range, output_dtype="int8"
            ),
        )
        lookup_codes, lookup_scale = weight_quantizer(
            storage_lib.to_numpy(self.lookup), to_numpy=True
        )
        lookup_scale = ops.reshape(lookup_scale, (self.input_dim,))
        if mode == "int4":
            lookup_codes, _, _ = quantizers.pack_int4(lookup_codes, axis=-1)
        projection_codes, projection_scale = quantizers.abs_max_quantize(
            storage_lib.to_numpy(self.projection),
            axis=0,
            value_range=(-127, 127),
            dtype="int8",
            to_numpy=True,
        )
        projection_scale = ops.reshape(projection_scale, (self.output_dim,))

        del self.lookup
        del self.projection
        self.quantized_build(
            (self.input_dim, self.output_dim), mode, self.quantization_config
        )
        self.lookup.assign(lookup_codes)
        self.lookup_scale.assign(lookup_scale)
        self.projection.assign(projection_codes)
        self.projection_scale.assign(projection_scale)

        if self.dtype_policy.quantization_mode is None:
            # `int4/-1` names per-row (per-channel) int4 for Keras, which is
            # what is stored, so a reloaded layer rebuilds the same layout.
            policy_name = "int4/-1" if mode == "int4" else mode
            self.dtype_policy = dtype_policies.get(
                f"{policy_name}_from_{self.dtype_policy.name}"
            )

    def quantized_build(self, embeddings_shape, mode, config=None):
        if mode == "int8":
            self._int8_build(embeddings_shape, config)
        elif mode == "int4":
            self._int4_build(embeddings_shape, config)
        else:
            raise self._quantization_mode_error(mode)
        self._is_quantized = True

    def _int8_build(self, embeddings_shape, config=None):
        self._build_quantized_factors(lookup_width=self.rank)

    def _int4_build(self, embeddings_shape, config=None):
        # Two int4 codes per int8 byte along the rank axis.
        self._build_quantized_factors(lookup_width=(self.rank + 1) // 2)

    def _build_quantized_factors(self, lookup_width):
        self.lookup = self.add_weight(
            name="lookup",
            shape=(self.input_dim, lookup_width),
            initializer="zeros",
            dtype="int8",
            trainable=False,
        )
        self.lookup_scale = self.add_weight(
            name="lookup_scale",
            shape=(self.input_dim,),
            initializer="ones",
            trainable=False,
        )
        self.projection = self.add_weight(
            name="projection",
            shape=(self.rank, self.output_dim),
            initializer="zeros",
            dtype="int8",
            trainable=False,
        )
        self.projection_scale = self.add_weight(
            name="projection_scale",
            shape=(self.output_dim,),
            initializer="ones",
            trainable=False,
        )

    def _int8_call(self, inputs, training=None):
        return self._embed(inputs)

    def _int4_call(self, inputs, training=None):
        return self._embed(inputs)

    def _quantization_mode_error(self, mode):
        return NotImplementedError(
            "Invalid quantization mode for LowRankEmbedding. Expected one of "
            f"{_SUPPORTED_QUANTIZATION_MODES}. Received: quantization_mode="
            f"{mode}"
        )

    @property
    def variable_serialization_spec(self):
        """Variable names saved, in order, for each quantization mode."""
        quantized = ["lookup", "lookup_scale", "projection", "projection_scale"]
        return {
            None: ["lookup", "projection"],
            "int8": quantized,
            "int4": quantized,
        }

    def save_own_variables(self, store):
        if not self.built:
            return
        mode = self.quantization_mode
        if mode not in self.variable_serialization_spec:
            raise self._quantization_mode_error(mode)
        for index, name in enumerate(self.variable_serialization_spec[mode]):
            store[str(index)] = getattr(self, name)

    def load_own_variables(self, store):
        self._check_load_own_variables(store)
        if not self.built:
            return
        mode = self.quantization_mode
        if mode not in self.variable_serialization_spec:
            raise self._quantization_mode_error(mode)
        for index, name in enumerate(self.variable_serialization_spec[mode]):
            getattr(self, name).assign(store[str(index)])

    def get_config(self):
        base_config = super().get_config()
        config = {
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "rank": self.rank,
            "lookup_initializer": initializers.serialize(
                self.lookup_initializer
            ),
            "projection_initializer": initializers.serialize(
                self.projection_initializer
            ),
            "mask_zero": self.mask_zero,
        }
        # Only what differs from the defaults.
        optional = {
            "lookup_regularizer": regularizers.serialize(
                self.lookup_regularizer
            ),
            "projection_regularizer": regularizers.serialize(
                self.projection_regularizer
            ),
            "lookup_constraint": constraints.serialize(self.lookup_constraint),
            "projection_constraint": constraints.serialize(
                self.projection_constraint
            ),
            "quantization_config": saving.serialize_keras_object(
                self.quantization_config
            ),
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        return {**base_config, **config}

    @classmethod
    def from_config(cls, config):
        config = config.copy()
        config["quantization_config"] = (
            saving.deserialize_keras_object(
                config.get("quantization_config", None)
            )
        )
        return super().from_config(config)

    def _embed(self, inputs):
        """Shared forward pass of `call`, `_int8_call` and `_int4_call`."""
        return embed_ids(inputs, self._embed_dense_ids)

    def _embed_dense_ids(self, inputs):
        compute_dtype = self.compute_dtype
        mode = self.quantization_mode
        if mode is None:
            rows = ops.take(self.lookup, inputs, axis=0)
            rows = ops.cast(rows, compute_dtype)
            return ops.matmul(rows, ops.cast(self.projection, compute_dtype))
        # Quantized: gather the codes of the requested rows only (never the
        # whole table), dequantize them, multiply by the int8 codes of B and
        # rescale the output columns.
        codes = ops.take(self.lookup, inputs, axis=0)
        row_scale = ops.expand_dims(
            ops.cast(ops.take(self.lookup_scale, inputs, axis=0), compute_dtype), -1
        )
        projection = ops.cast(self.projection, compute_dtype)
        if mode == "int4":
            # Byte j of a row packs codes 2j (low nibble) and 2j+1 (high
            # nibble): multiply each nibble plane by the matching rows of B
            # instead of interleaving them, with arithmetic rather than
            # bitwise unpacking, so the graph stays in TFLite's builtin ops.
            low, high = storage_lib.int4_nibbles(codes)
            even = ops.take(projection, np.arange(0, self.rank, 2), axis=0)
            odd = ops.take(projection, np.arange(1, self.rank, 2), axis=0)
            outputs = ops.matmul(ops.divide(ops.cast(low, compute_dtype), row_scale), even)
            if self.rank > 1:
                high = high[..., : self.rank // 2]
                outputs = outputs + ops.matmul(
                    ops.divide(ops.cast(high, compute_dtype), row_scale), odd
                )
        else:
            rows = ops.divide(ops.cast(codes, compute_dtype), row_scale)
            outputs = ops.matmul(rows, projection)
        return ops.divide(
            outputs, ops.cast(self.projection_scale, compute_dtype)
        )

    def _lookup_codes(self, stored):
        """Integer codes of `A` from stored (maybe int4-packed) rows."""
        if self.quantization_mode == "int4":
            return quantizers.unpack_int4(stored, self.rank, axis=-1)
        return stored


def _default_factor_initializer(rank):
    # rank * (limit**2 / 3)**2 == 0.05**2 / 3: see the class docstring.
    limit = float((9.0 * _EMBEDDING_INIT_VARIANCE / rank) ** 0.25)
    return initializers.RandomUniform(minval=-limit, maxval=limit)


def embed_ids(inputs, embed):
    """Applies `embed` to ids taken the way `keras.layers.Embedding` takes them.

    Ragged ids keep their row structure (the flat ids are embedded, as
    `tf.nn.embedding_lookup` does). Sparse ids are densified with id 0:
    `Embedding` embeds their absent positions as id 0 (TensorFlow's
    `safe_embedding_lookup_sparse` with `default_id=0`) and returns a dense
    tensor, so this is the same lookup for every table and storage. Ids of
    any other dtype are cast to int32.

    Args:
        inputs: Dense, ragged or sparse ids.
        embed: A function of dense int32/int64 ids returning their rows.

    Returns:
        The rows, ragged when `inputs` is.
    """
    if _is_ragged(inputs):
        return inputs.with_flat_values(embed_ids(inputs.flat_values, embed))
    if _is_sparse(inputs):
        inputs = ops.convert_to_tensor(inputs, sparse=False)
    if backend.standardize_dtype(inputs.dtype) not in ("int32", "int64"):
        inputs = ops.cast(inputs, "int32")
    return embed(inputs)


def _is_ragged(x):
    if backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(x, tf.RaggedTensor)


def _is_sparse(x):
    if backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(x, tf.SparseTensor)


def _check_int4_block_size(config, rank):
    """Refuses an int4 `block_size` that would need per-block scales on `A`.

    Keras fills in `Int4QuantizationConfig()` (block_size=128) when no config
    is given, so the default cannot be told from an explicit 128: it, and
    any block at least a row long, means one block per row, which is what
    the per-row scales implement. A shorter block would silently be a no-op.
    """
    block_size = getattr(config, "block_size", None)
    if block_size is None or block_size == -1 or block_size >= rank:
        return
    if block_size == _keras_default_int4_block_size():
        return
    raise ValueError(
        "LowRankEmbedding quantizes its lookup factor per row (one int4 block "
        f"of rank={rank} values); expected `block_size` None, -1 or >= {rank}, "
        f"received: block_size={block_size}"
    )


def _keras_default_int4_block_size():
    import inspect

    from keras.quantizers import Int4QuantizationConfig

    parameter = inspect.signature(Int4QuantizationConfig.__init__).parameters.get("block_size")
    return None if parameter is None else parameter.default
