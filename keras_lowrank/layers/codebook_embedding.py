"""`CodebookEmbedding`: an `Embedding` whose rows are product-quantized.

This module holds the layer and nothing else: the lookup of integer ids in
a table whose rows are concatenations of codewords, the straight-through
training of the codes, freezing them into packed integers, masking,
serialization and the conversions from and to a plain
`keras.layers.Embedding`. It must not walk or rebuild models (that is the
surgery's job) and it must not implement clustering of its own: the k-means
lives in `keras_lowrank.decomposition.kmeans`.
"""

import contextlib
import math
import numbers

import numpy as np
from keras import KerasTensor
from keras import initializers
from keras import layers
from keras import ops
from keras.saving import register_keras_serializable

from keras_lowrank import decomposition
from keras_lowrank.decomposition import kmeans
from keras_lowrank.layers import storage as storage_lib
from keras_lowrank.layers.low_rank_embedding import embed_ids
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import remap_dtype

# How the codebooks may be kept, and the most codewords a codebook holds
# (codes are stored in at most 8 bits).
CODEBOOK_DTYPES = ("float32", "int8")
MAX_CODES = 256


def exact_map_dtype(exact_rows):
    """The integer dtype of the id -> exact row map of `exact_rows` exact rows.

    The map holds, for each stored row, its exact row in `[0, exact_rows)`,
    or `exact_rows` for a row answered by its codes.
    """
    return remap_dtype(exact_rows + 1)


@register_keras_serializable(package="keras_lowrank")
class CodebookEmbedding(layers.Layer):
    """Turns integer ids into dense vectors made of shared codewords.

    A drop-in replacement for `keras.layers.Embedding` whose rows are
    product-quantized: the `output_dim` dimensions are split into `groups`
    sub-vectors of `output_dim / groups` dimensions each; group `g` has a
    codebook of `codes` codewords (`codebooks`, shape
    `(groups, codes, output_dim / groups)`), and each id stores one code per
    group. Row `i` is `concat_g codebooks[g, code[i, g]]`.

    The layer has two forms:

    - Training form (the default): it holds a full float table
      `embeddings` `(input_dim, output_dim)` besides the codebooks. The call
      maps each sub-vector of the looked-up rows to its nearest codeword and
      outputs the codewords; the gradient passes straight through (the
      backward pass treats the quantization as the identity), so it reaches
      both the table rows and the codewords. The call also adds, with
      `add_loss`, the codebook and commitment losses of VQ-VAE,
      `mean((sg(x) - q)**2) + beta * mean((x - sg(q))**2)` over the
      looked-up entries (`x` the table entries, `q` the codeword entries,
      `sg` stop-gradient), which pull codewords toward the rows they serve
      and keep rows near their codewords.
    - Frozen form, after `freeze_codes()`: the codes are fixed to the
      nearest codewords and stored as non-trainable `uint8` integers
      (`packed_codes`, two per byte when `codes <= 16`), and the full table
      is gone. The call is a pure gather of codes, then of codewords. With
      `codebook_dtype="float32"` the codebooks stay trainable, so a
      fine-tune of the codebooks alone (and of the rest of the model) is
      still possible.

    Exact rows (`exact_rows=K`): the `K` rows codes serve worst (see
    `from_embedding`) skip the codebooks and are kept whole. In the training
    form they are the table's own rows, trained directly and left out of
    the codebook and commitment losses; once frozen they are stored as int8
    with one float32 scale per row (`quantized_exact_rows`, `exact_scale`),
    as Keras' own int8 `Embedding` stores every row. Which ids they answer
    is either the first `K` ids (`exact_remap=False`: a frequency-ordered
    vocabulary needs no map) or any `K` ids, through a stored map
    (`exact_slots`: for each id its exact row, or `K` for "use the codes").
    A few thousand exact rows next to codebooks spend a budget the codes
    alone cannot use (the next codebook shape is often twice the bytes),
    on the rows that matter most.

    Rotated codes (`rotate=True`, optimized product quantization): the
    codes quantize the rows turned by a fixed orthogonal `rotation`
    `(output_dim, output_dim)` rather than the rows themselves, and row `i`
    is `concat_g codebooks[g, code[i, g]] @ rotation^T`. `from_embedding`
    takes the rotation from the table (`balanced_rotation` in
    `keras_lowrank.decomposition.kmeans`: principal directions spread so
    that every group holds about the same variance); a trained table whose
    variance sits in a few directions is then coded far better by the same
    code bits. The rotation costs `output_dim**2` numbers, stored like the
    codebooks (float32, or int8 with one float32 scale per column once
    frozen), so it pays on wide tables with many rows. Exact rows are kept
    unrotated. The rotation is not trained.

    `get_config()` records the form (`codes_frozen`), so both forms save to
    and load from `.keras` files; a frozen layer's file holds no
    `input_dim x output_dim` table. `freeze_codes()` changes the layer's
    variables: compile the model again before training it further.

    Codebook storage (`codebook_dtype`): `"float32"`, or `"int8"` once
    frozen: symmetric abs-max int8 with one float32 scale per codebook
    (`codeword = int8 code / scale[g]`, `scale[g] = 127 / max|codebooks[g]|`).
    In the training form the codebooks are always float32; int8 codebooks
    are not trainable.

    The most common way to obtain one is
    `CodebookEmbedding.from_embedding(trained_table, groups, codes)`, which
    product-quantizes a trained table by k-means.

    Example:

    ```python
    layer = keras_lowrank.CodebookEmbedding(10_000, 64, groups=16, codes=16)
    ids = np.random.randint(10_000, size=(32, 40))
    layer(ids).shape  # (32, 40, 64)

    # From a trained table, frozen at once: 8 bytes of codes per row.
    small = keras_lowrank.CodebookEmbedding.from_embedding(
        trained_embedding, groups=16, codes=16
    )
    ```

    Args:
        input_dim: Integer. Size of the vocabulary, i.e. maximum integer
            index + 1.
        output_dim: Integer. Dimension of the dense embedding.
        groups: Integer dividing `output_dim`: sub-vectors (and codes) per
            row.
        codes: Integer in `[2, 256]`: codewords per codebook.
        codebook_dtype: `"float32"` or `"int8"`: how the frozen layer
            stores its codebooks (see above).
        beta: Non-negative float, weight of the commitment loss in the
            training form.
        exact_rows: Non-negative integer smaller than `input_dim`: rows kept
            exactly rather than by codes (see above). Defaults to 0.
        exact_remap: Boolean, whether the exact rows answer the ids a
            stored map names (`True`) or the first `exact_rows` ids
            (`False`, the default).
        rotate: Boolean, whether the codes quantize rotated rows (see
            above). Defaults to `False`.
        embeddings_initializer: Initializer for the training table and the
            codebooks (codewords live in the space of the rows, so they are
            drawn alike). Defaults to `"uniform"`, as in `Embedding`.
        mask_zero: Boolean, whether id 0 is a padding value to be masked
            out, exactly as in `keras.layers.Embedding`.
        codes_frozen: Boolean, whether the layer is built in the frozen
            form. Set by `freeze_codes()` and recorded in the config.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, `trainable`,
            `activity_regularizer`, ...).

    Call arguments:
        inputs: Integer ids (other dtypes are cast to `int32`), dense,
            `tf.SparseTensor` (absent positions embed id 0, the output is
            dense) or `tf.RaggedTensor` (the output is ragged).

    Input shape:
        Integer tensor of any shape `(d1, ..., dn)`.

    Output shape:
        `(d1, ..., dn, output_dim)`; ragged for ragged ids.

    References:
        - [Chen, Li and Sun, 2020. Differentiable Product Quantization for
          End-to-End Embedding Compression](https://arxiv.org/abs/1908.09756)
          (ICML 2020)
        - [Shu and Nakayama, 2018. Compressing Word Embeddings via Deep
          Compositional Code Learning](https://arxiv.org/abs/1711.01068)
          (ICLR 2018)
        - [van den Oord, Vinyals and Kavukcuoglu, 2017. Neural Discrete
          Representation Learning](https://arxiv.org/abs/1711.00937)
          (NeurIPS 2017)
        - [Ge, He, Ke and Sun, 2013. Optimized Product Quantization for
          Approximate Nearest Neighbor Search](https://doi.org/10.1109/CVPR.2013.379)
          (CVPR 2013)
    """

    def __init__(
        self,
        input_dim,
        output_dim,
        groups,
        codes,
        codebook_dtype="float32",
        beta=0.25,
        embeddings_initializer="uniform",
        mask_zero=False,
        codes_frozen=False,
        exact_rows=0,
        exact_remap=False,
        rotate=False,
        **kwargs,
    ):
        storage_lib.check_positive_int("input_dim", input_dim)
        storage_lib.check_positive_int("output_dim", output_dim)
        storage_lib.check_positive_int("groups", groups)
        if output_dim % groups:
            raise ValueError(
                f"Expected `groups` to divide output_dim={output_dim}, "
                f"received: groups={groups}"
            )
        if (
            not isinstance(codes, (int, np.integer))
            or isinstance(codes, (bool, np.bool_))
            or not 2 <= codes <= MAX_CODES
        ):
            raise ValueError(
                f"Expected `codes` to be an integer in [2, {MAX_CODES}], "
                f"received: codes={codes!r} (of type {type(codes).__name__})"
            )
        if codebook_dtype not in CODEBOOK_DTYPES:
            raise ValueError(
                f"Expected `codebook_dtype` to be one of {CODEBOOK_DTYPES}, "
                f"received: codebook_dtype={codebook_dtype!r}"
            )
        if (
            not isinstance(beta, numbers.Real)
            or isinstance(beta, (bool, np.bool_))
            or not math.isfinite(beta)
            or beta < 0
        ):
            raise ValueError(
                "Expected `beta` to be a non-negative finite float, "
                f"received: beta={beta!r}"
            )
        if (
            not isinstance(exact_rows, (int, np.integer))
            or isinstance(exact_rows, (bool, np.bool_))
            or not 0 <= exact_rows < input_dim
        ):
            raise ValueError(
                f"Expected `exact_rows` to be an integer in [0, input_dim={input_dim}), "
                f"received: exact_rows={exact_rows!r}"
            )
        for name, value in (
            ("mask_zero", mask_zero),
            ("codes_frozen", codes_frozen),
            ("exact_remap", exact_remap),
            ("rotate", rotate),
        ):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(
                    f"Expected `{name}` to be a boolean, received: "
                    f"{name}={value!r} (of type {type(value).__name__})"
                )
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.groups = int(groups)
        self.codes = int(codes)
        self.codebook_dtype = codebook_dtype
        self.beta = float(beta)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.mask_zero = bool(mask_zero)
        self.codes_frozen = bool(codes_frozen)
        self.exact_rows = int(exact_rows)
        self.exact_remap = bool(exact_remap) and self.exact_rows > 0
        self.rotate = bool(rotate)
        # Set only while an exporter traces the layer (`rotation_as_constant`).
        self._rotation_constant = None
        self.supports_masking = self.mask_zero
        # Like `Embedding`: the float32 variables are not auto-cast as a
        # whole; only the gathered rows are cast to the compute dtype.
        self.autocast = False
        # Initial values by variable name, set by `from_embedding` for the
        # duration of `build()`.
        self._initial_values = {}

    def build(self, input_shape=None):
        if self.built:
            return
        float_codebooks = not self.codes_frozen or self.codebook_dtype == "float32"
        int8_codebooks = self.codebook_dtype == "int8"
        if not self.codes_frozen:
            self.embeddings = self.add_weight(
                name="embeddings",
                shape=(self.input_dim, self.output_dim),
                initializer=self._initializer("embeddings", self.embeddings_initializer),
                trainable=True,
            )
        if float_codebooks:
            self.codebooks = self.add_weight(
                name="codebooks",
                shape=(self.groups, self.codes, self.sub_dim),
                initializer=self._initializer("codebooks", self.embeddings_initializer),
                trainable=True,
            )
        # The frozen form's variables exist in the training form too (Keras
        # locks a layer's state once built), and are filled by
        # `freeze_codes()`; they are not saved while the codes are trained.
        if int8_codebooks:
            self.quantized_codebooks = self.add_weight(
                name="quantized_codebooks",
                shape=(self.groups, self.codes, self.sub_dim),
                initializer=self._initializer("quantized_codebooks", "zeros"),
                dtype="int8",
                trainable=False,
            )
            self.codebook_scale = self.add_weight(
                name="codebook_scale",
                shape=(self.groups,),
                initializer=self._initializer("codebook_scale", "ones"),
                trainable=False,
            )
        if self.rotate and float_codebooks:
            self.rotation = self.add_weight(
                name="rotation",
                shape=(self.output_dim, self.output_dim),
                initializer=self._initializer("rotation", "identity"),
                trainable=False,
            )
        if self.rotate and int8_codebooks:
            self.quantized_rotation = self.add_weight(
                name="quantized_rotation",
                shape=(self.output_dim, self.output_dim),
                initializer=self._initializer("quantized_rotation", "zeros"),
                dtype="int8",
                trainable=False,
            )
            self.rotation_scale = self.add_weight(
                name="rotation_scale",
                shape=(self.output_dim,),
                initializer=self._initializer("rotation_scale", "ones"),
                trainable=False,
            )
        self.packed_codes = self.add_weight(
            name="packed_codes",
            shape=(self.input_dim, self.packed_width),
            initializer=self._initializer("packed_codes", "zeros"),
            dtype="uint8",
            trainable=False,
        )
        if self.exact_rows:
            self.quantized_exact_rows = self.add_weight(
                name="quantized_exact_rows",
                shape=(self.exact_rows, self.output_dim),
                initializer=self._initializer("quantized_exact_rows", "zeros"),
                dtype="int8",
                trainable=False,
            )
            self.exact_scale = self.add_weight(
                name="exact_scale",
                shape=(self.exact_rows,),
                initializer=self._initializer("exact_scale", "ones"),
                trainable=False,
            )
        if self.exact_remap:
            map_dtype = exact_map_dtype(self.exact_rows)
            # Until `from_embedding` names them: the first ids, as without a map.
            first = np.minimum(np.arange(self.input_dim), self.exact_rows).astype(map_dtype)
            self.exact_slots = self.add_weight(
                name="exact_slots",
                shape=(self.input_dim,),
                initializer=self._initializer("exact_slots", storage_lib.array_initializer(first)),
                dtype=map_dtype,
                trainable=False,
            )
        self.built = True

    @property
    def sub_dim(self):
        """Dimensions per group, `output_dim / groups`."""
        return self.output_dim // self.groups

    @property
    def bits_per_code(self):
        """4 when `codes <= 16` (two codes per byte), else 8."""
        return storage_lib.bits_per_code(self.codes)

    @property
    def packed_width(self):
        """Bytes of codes per row: `ceil(groups * bits_per_code / 8)`."""
        return -(-self.groups * self.bits_per_code // 8)

    def call(self, inputs):
        return embed_ids(inputs, self._embed_dense_ids)

    def _embed_dense_ids(self, inputs):
        ids = ops.reshape(inputs, (-1,))
        codebooks = self.dequantized_codebooks()
        if self.codes_frozen:
            labels = storage_lib.unpack_codes(
                ops.take(self.packed_codes, ids, axis=0), self.groups, self.bits_per_code
            )
            quantized = self._codewords(codebooks, labels)
        else:
            # Distances in float32 whatever the variable dtype, so that the
            # argmin does not flip on rounding.
            table_rows = ops.cast(ops.take(self.embeddings, ids, axis=0), "float32")
            coded_rows = table_rows
            if self.rotate:
                coded_rows = ops.matmul(table_rows, self._rotation())
            rows = ops.reshape(coded_rows, (-1, self.groups, self.sub_dim))
            # argmin_k ||x - c_k||^2 = argmin_k ||c_k||^2 - 2 x.c_k.
            scores = ops.sum(ops.square(codebooks), axis=-1) - 2.0 * ops.einsum(
                "ngs,gks->ngk", rows, codebooks
            )
            quantized = self._codewords(codebooks, ops.argmin(scores, axis=-1))
            # Exact rows do not use the codebooks: they neither pull
            # codewords nor are pulled toward them.
            served = 1.0
            if self.exact_rows:
                served = ops.reshape(
                    ops.cast(ops.greater_equal(self._exact_slots_of(ids), self.exact_rows), "float32"),
                    (-1, 1, 1),
                )
            self.add_loss(
                ops.mean(served * ops.square(ops.stop_gradient(rows) - quantized))
                + self.beta * ops.mean(served * ops.square(rows - ops.stop_gradient(quantized)))
            )
            # Forward: the codewords. Backward: the identity, to the table
            # rows and to the codewords alike.
            quantized = quantized + (rows - ops.stop_gradient(rows))
        quantized = ops.reshape(quantized, (-1, self.output_dim))
        if self.rotate:
            # Orthogonal, so the straight-through gradient reaches the
            # table rows unchanged.
            quantized = ops.matmul(quantized, ops.transpose(self._rotation()))
        if self.exact_rows:
            quantized = self._with_exact_rows(ids, quantized, None if self.codes_frozen else table_rows)
        outputs = ops.reshape(quantized, (*ops.shape(inputs), self.output_dim))
        return ops.cast(outputs, self.compute_dtype)

    def _exact_slots_of(self, ids):
        """Each id's exact row, or `exact_rows` when its codes answer it (int32)."""
        if self.exact_remap:
            return ops.cast(ops.take(self.exact_slots, ids, axis=0), "int32")
        return ops.minimum(ops.cast(ids, "int32"), self.exact_rows)

    def _with_exact_rows(self, ids, quantized, rows):
        """`quantized` `(n, output_dim)` with the exact rows put in for their ids."""
        slots = self._exact_slots_of(ids)
        exact = ops.expand_dims(ops.less(slots, self.exact_rows), -1)
        if rows is None:
            index = ops.minimum(slots, self.exact_rows - 1)
            values = ops.divide(
                ops.cast(ops.take(self.quantized_exact_rows, index, axis=0), "float32"),
                ops.expand_dims(ops.cast(ops.take(self.exact_scale, index, axis=0), "float32"), -1),
            )
        else:
            values = ops.reshape(rows, (-1, self.output_dim))
        return ops.where(exact, values, quantized)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def compute_output_spec(self, inputs):
        output_shape = self.compute_output_shape(inputs.shape)
        ragged = getattr(inputs, "ragged", False)
        return KerasTensor(output_shape, dtype=self.compute_dtype, ragged=ragged)

    @contextlib.contextmanager
    def rotation_as_constant(self):
        """While active, calls take the rotation as a float32 constant.

        For exporters tracing the layer (`keras_lowrank.export.export_tflite`
        enters it through the table-kind registry). Read from its variables,
        an int8 rotation is dequantized on every call and its matmul has
        computed weights, so LiteRT runs it as a float matmul without
        prepacked weights; as a constant it is an ordinary
        `FULLY_CONNECTED` kernel that the converter keeps in float32 or, in
        dynamic-range files, quantizes back to int8 per channel. The numbers
        are the same: `dequantized_rotation()` at entry. A layer without a
        rotation is unchanged.
        """
        if not self.rotate:
            yield
            return
        self._rotation_constant = storage_lib.to_numpy(self.dequantized_rotation()).astype(np.float32)
        try:
            yield
        finally:
            self._rotation_constant = None

    def _rotation(self):
        if self._rotation_constant is not None:
            return ops.convert_to_tensor(self._rotation_constant)
        return self.dequantized_rotation()

    def dequantized_rotation(self):
        """The rotation `(output_dim, output_dim)` in float32 (`rotate=True` only)."""
        self._check_built("read the rotation of")
        if not self.rotate:
            raise ValueError(f"Layer '{self.name}' has no rotation: it was built with rotate=False")
        if self.codes_frozen and self.codebook_dtype == "int8":
            return ops.divide(
                ops.cast(self.quantized_rotation, "float32"),
                ops.reshape(ops.cast(self.rotation_scale, "float32"), (1, -1)),
            )
        return ops.cast(self.rotation, "float32")

    def dequantized_codebooks(self):
        """The codebooks `(groups, codes, output_dim / groups)` in float32."""
        self._check_built("read the codebooks of")
        if self.codes_frozen and self.codebook_dtype == "int8":
            return ops.divide(
                ops.cast(self.quantized_codebooks, "float32"),
                ops.reshape(ops.cast(self.codebook_scale, "float32"), (-1, 1, 1)),
            )
        return ops.cast(self.codebooks, "float32")

    def get_codes(self):
        """The code of every row in every group, unpacked.

        Frozen form: the stored codes. Training form: the nearest codeword
        of each sub-vector of `embeddings` now, i.e. the codes
        `freeze_codes()` would store.

        Returns:
            An int32 numpy array `(input_dim, groups)` of values in
            `[0, codes)`.
        """
        self._check_built("read the codes of")
        if self.codes_frozen:
            return storage_lib.to_numpy(
                storage_lib.unpack_codes(self.packed_codes, self.groups, self.bits_per_code)
            ).astype(np.int32)
        return kmeans.assign_codes(self._coded_table(), storage_lib.to_numpy(self.codebooks))

    def _coded_table(self):
        """The training table as the codes see it (rotated if `rotate`), float32 numpy."""
        table = storage_lib.to_numpy(ops.cast(self.embeddings, "float32"))
        if self.rotate:
            table = table @ storage_lib.to_numpy(self.dequantized_rotation())
        return table

    def decoded_table(self):
        """The `(input_dim, output_dim)` float32 table of the rows the layer outputs.

        For inspection and export only: `call` never builds it.
        """
        table = _decode(storage_lib.to_numpy(self.dequantized_codebooks()), self.get_codes())
        if self.rotate:
            table = table @ storage_lib.to_numpy(self.dequantized_rotation()).T
        if self.exact_rows:
            table[self.exact_ids()] = self._exact_values()
        return table

    def exact_ids(self):
        """The ids of the exact rows, in their stored order (int32 numpy, maybe empty)."""
        self._check_built("read the exact rows of")
        if not self.exact_remap:
            return np.arange(self.exact_rows, dtype=np.int32)
        slots = storage_lib.to_numpy(self.exact_slots).astype(np.int64)
        ids = np.flatnonzero(slots < self.exact_rows)
        return ids[np.argsort(slots[ids], kind="stable")].astype(np.int32)

    def _exact_values(self):
        """The exact rows `(exact_rows, output_dim)` as the layer answers them, float32."""
        if self.codes_frozen:
            return (
                storage_lib.to_numpy(self.quantized_exact_rows).astype(np.float32)
                / storage_lib.to_numpy(self.exact_scale).astype(np.float32)[:, None]
            )
        return storage_lib.to_numpy(ops.cast(self.embeddings, "float32"))[self.exact_ids()]

    def stored_bytes(self):
        """Bytes this layer stores once its codes are frozen.

        `input_dim * packed_width` bytes of codes (`packed_width =
        ceil(groups / 2)` for `codes <= 16`, else `groups`), plus
        `codes * output_dim * 4` bytes of float32 codebooks or
        `codes * output_dim` bytes of int8 codebooks and `4 * groups` bytes
        of float32 scales; exact rows add `exact_rows * (output_dim + 4)`
        bytes, and their map one small integer per id. This is what `keras_lowrank.table_bytes` counts on
        the frozen layer; the training form also holds the
        `4 * input_dim * output_dim` bytes of its float table (and the
        frozen form's variables, waiting to be filled) until
        `freeze_codes()`.

        Returns:
            The number of bytes (int).
        """
        return self.table_layout().stored_bytes()

    def table_layout(self):
        """The `keras_lowrank.TableLayout` of the frozen form (codebook kind)."""
        return TableLayout(
            self.input_dim,
            self.output_dim,
            kind="codebook",
            groups=self.groups,
            codes=self.codes,
            storage=self.codebook_dtype,
            exact_rows=self.exact_rows,
            exact_remap=self.exact_remap,
            rotate=self.rotate,
        )

    def freeze_codes(self):
        """Fixes every row to its nearest codewords and drops the full table.

        Assigns each sub-vector of `embeddings` to its nearest codeword
        (what the training-form call outputs), stores the codes in the
        non-trainable `uint8` `packed_codes` variable (two per byte when
        `codes <= 16`), quantizes the codebooks if `codebook_dtype="int8"`,
        and deletes `embeddings`. From then on the call is a gather of codes
        and codewords. Compile the model again before training it further.
        Does nothing on a layer whose codes are already frozen.
        """
        self._check_built("freeze the codes of")
        if self.codes_frozen:
            return
        codebooks = storage_lib.to_numpy(self.codebooks).astype(np.float32)
        self.packed_codes.assign(
            storage_lib.pack_codes(self.get_codes(), self.bits_per_code)
        )
        if self.exact_rows:
            quantized, scale = storage_lib.quantize_int8(self._exact_values(), axis=1)
            self.quantized_exact_rows.assign(quantized)
            self.exact_scale.assign(scale)
        if self.codebook_dtype == "int8":
            quantized, scale = storage_lib.quantize_int8(codebooks, axis=(1, 2))
            self.quantized_codebooks.assign(quantized)
            self.codebook_scale.assign(scale)
            del self.codebooks
            if self.rotate:
                quantized, scale = _quantize_rotation(storage_lib.to_numpy(self.rotation))
                self.quantized_rotation.assign(quantized)
                self.rotation_scale.assign(scale)
                del self.rotation
        del self.embeddings
        self.codes_frozen = True

    @classmethod
    def from_embedding(
        cls,
        table,
        groups,
        codes,
        *,
        row_weights=None,
        seed=0,
        iterations=kmeans.DEFAULT_ITERATIONS,
        freeze=True,
        name=None,
        **kwargs,
    ):
        """Builds a `CodebookEmbedding` from a trained table by k-means.

        Each group of columns of the table is clustered into `codes`
        codewords by `keras_lowrank.decomposition.kmeans.product_quantize`
        (k-means++ seeding, at most `iterations` Lloyd iterations, weighted
        by `row_weights` if given); each row gets the codes of its nearest
        codewords. The result depends only on the table, the arguments and
        `seed`.

        With `exact_rows=K` (a constructor argument, passed through
        `**kwargs`), the `K` rows codes serve worst are kept exactly: with
        `exact_remap=True`, the rows of largest weighted reconstruction
        error `w_i * ||row_i - codewords_i||^2` after the first k-means (the
        frequent rows, and rows far from every codeword); otherwise the
        first `K` ids. The codebooks are then fitted again, by the same
        k-means, to the other rows only.

        Args:
            table: A built, unquantized `keras.layers.Embedding` (its
                `mask_zero`, dtype policy, `trainable` flag, activity
                regularizer and name are carried over) or a 2-D array
                `(input_dim, output_dim)`.
            groups: Integer dividing `output_dim`: codes per row.
            codes: Integer in `[2, 256]`: codewords per group.
            row_weights: Optional non-negative weights, one per row (for
                example token counts): frequent rows are then reconstructed
                more accurately.
            seed: Non-negative integer seed of the k-means++ seeding.
            iterations: Non-negative integer, the most Lloyd iterations.
            freeze: If `True` (default), return the frozen form; if `False`,
                the training form holding `table` and the k-means codebooks,
                to be fine-tuned with straight-through gradients and frozen
                later with `freeze_codes()`.
            name: Name of the new layer. Defaults to the source layer's name.
            **kwargs: Other `CodebookEmbedding` constructor arguments (for
                example `codebook_dtype` or `mask_zero`).

        Returns:
            A built `CodebookEmbedding`.
        """
        if not isinstance(freeze, (bool, np.bool_)):
            raise ValueError(
                f"Expected `freeze` to be a boolean, received: freeze={freeze!r}"
            )
        if isinstance(table, layers.Embedding):
            source = table
            if not source.built:
                raise ValueError(
                    "Expected `table` to be built (its table must exist), "
                    f"received the unbuilt layer: table='{source.name}'. "
                    "Build it or call it on data first."
                )
            if source.quantization_mode is not None:
                raise ValueError(
                    "Expected `table` to hold a float table, received a layer "
                    f"quantized with mode '{source.quantization_mode}': "
                    f"table='{source.name}'"
                )
            kwargs.setdefault("mask_zero", source.mask_zero)
            kwargs.setdefault("dtype", source.dtype_policy)
            kwargs.setdefault("trainable", source.trainable)
            if source.activity_regularizer is not None:
                kwargs.setdefault("activity_regularizer", source.activity_regularizer)
            name = source.name if name is None else name
            values = storage_lib.to_numpy(ops.cast(source.embeddings, "float32"))
        elif isinstance(table, layers.Layer):
            raise ValueError(
                "Expected `table` to be a `keras.layers.Embedding` or a 2-D "
                f"array, received: table={table!r} (of type {type(table).__name__})"
            )
        else:
            values = table
        values = decomposition.validate_table(values, name="table")
        input_dim, output_dim = values.shape
        layer = cls(
            input_dim, output_dim, groups, codes, codes_frozen=bool(freeze),
            name=name, **kwargs,
        )
        coded = values
        if layer.rotate:
            rotation = kmeans.balanced_rotation(values, layer.groups, row_weights=row_weights)
            coded = np.asarray(values, np.float32) @ rotation
        result = kmeans.product_quantize(
            coded, layer.groups, layer.codes, row_weights=row_weights,
            iterations=iterations, seed=seed,
        )
        exact_ids = np.zeros((0,), np.int64)
        if layer.exact_rows:
            # A rotation keeps distances: the errors of the rotated rows are the rows' errors.
            exact_ids = _exact_ids(coded, result, row_weights, layer.exact_rows, layer.exact_remap)
            # The codebooks are fitted again to the rows they serve.
            by_codes = np.ones(input_dim, bool)
            by_codes[exact_ids] = False
            served = np.ones(input_dim) if row_weights is None else np.asarray(row_weights, np.float64)
            if not np.any(served[by_codes] > 0):
                served = np.ones(input_dim)
            served = np.where(by_codes, served, 0.0)
            result = kmeans.product_quantize(
                coded, layer.groups, layer.codes, row_weights=served,
                iterations=iterations, seed=seed,
            )
        # Weights are created with their values as initial values rather
        # than assigned afterwards: under MultiWorkerMirroredStrategy only
        # initial values are broadcast from the chief.
        initial = {
            "codebooks": result.codebooks,
            "packed_codes": storage_lib.pack_codes(result.codes, layer.bits_per_code),
        }
        if layer.rotate:
            initial["rotation"] = rotation
        if layer.exact_remap:
            slots = np.full(input_dim, layer.exact_rows, dtype=exact_map_dtype(layer.exact_rows))
            slots[exact_ids] = np.arange(layer.exact_rows)
            initial["exact_slots"] = slots
        if not freeze:
            initial["embeddings"] = np.asarray(values, np.float32)
        else:
            if layer.codebook_dtype == "int8":
                quantized, scale = storage_lib.quantize_int8(result.codebooks, axis=(1, 2))
                initial.update(quantized_codebooks=quantized, codebook_scale=scale)
                if layer.rotate:
                    quantized, scale = _quantize_rotation(rotation)
                    initial.update(quantized_rotation=quantized, rotation_scale=scale)
            if layer.exact_rows:
                quantized, scale = storage_lib.quantize_int8(np.asarray(values, np.float32)[exact_ids], axis=1)
                initial.update(quantized_exact_rows=quantized, exact_scale=scale)
        layer._initial_values = initial
        try:
            layer.build()
        finally:
            layer._initial_values = {}
        return layer

    def to_embedding(self):
        """Returns a built `keras.layers.Embedding` holding `decoded_table()`.

        The new layer has the same name, `mask_zero`, `trainable` flag,
        activity regularizer and dtype policy, and the same outputs.
        """
        self._check_built("convert to an Embedding")
        embedding = layers.Embedding(
            self.input_dim,
            self.output_dim,
            mask_zero=self.mask_zero,
            activity_regularizer=self.activity_regularizer,
            trainable=self.trainable,
            dtype=self.dtype_policy,
            name=self.name,
        )
        embedding.build()
        embedding.embeddings.assign(self.decoded_table())
        return embedding

    @property
    def variable_serialization_spec(self):
        """Variable names saved, in order, for each form (`codes_frozen`)."""
        frozen_codebooks = (
            ["quantized_codebooks", "codebook_scale"]
            if self.codebook_dtype == "int8"
            else ["codebooks"]
        )
        exact = ["quantized_exact_rows", "exact_scale"] if self.exact_rows else []
        exact_map = ["exact_slots"] if self.exact_remap else []
        rotation, frozen_rotation = [], []
        if self.rotate:
            rotation = ["rotation"]
            frozen_rotation = (
                ["quantized_rotation", "rotation_scale"] if self.codebook_dtype == "int8" else rotation
            )
        return {
            False: ["embeddings", "codebooks"] + rotation + exact_map,
            True: frozen_codebooks + frozen_rotation + ["packed_codes"] + exact + exact_map,
        }

    def save_own_variables(self, store):
        if not self.built:
            return
        for index, name in enumerate(self.variable_serialization_spec[self.codes_frozen]):
            store[str(index)] = getattr(self, name)

    def load_own_variables(self, store):
        if not self.built:
            return
        names = self.variable_serialization_spec[self.codes_frozen]
        if len(store.keys()) != len(names):
            raise ValueError(
                f"Layer '{self.name}' ({'frozen' if self.codes_frozen else 'training'} "
                f"form) expects {len(names)} saved variables ({', '.join(names)}), "
                f"received {len(store.keys())}"
            )
        for index, name in enumerate(names):
            getattr(self, name).assign(store[str(index)])

    def get_config(self):
        base_config = super().get_config()
        config = {
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "groups": self.groups,
            "codes": self.codes,
            "codebook_dtype": self.codebook_dtype,
            "beta": self.beta,
            "embeddings_initializer": initializers.serialize(
                self.embeddings_initializer
            ),
            "mask_zero": self.mask_zero,
            "codes_frozen": self.codes_frozen,
            "exact_rows": self.exact_rows,
            "exact_remap": self.exact_remap,
            "rotate": self.rotate,
        }
        return {**base_config, **config}

    def _initializer(self, name, default):
        values = self._initial_values.get(name)
        return default if values is None else storage_lib.array_initializer(values)

    def _codewords(self, codebooks, labels):
        """`codebooks[g, labels[n, g]]` for every n and g: `(n, groups, sub_dim)`."""
        offsets = ops.arange(self.groups, dtype="int32") * self.codes
        flat = ops.reshape(codebooks, (self.groups * self.codes, self.sub_dim))
        return ops.take(flat, ops.cast(labels, "int32") + offsets, axis=0)

    def _check_built(self, action):
        if not self.built:
            raise ValueError(
                f"Cannot {action} a layer that isn't built. "
                f"Layer '{self.name}' is not built yet."
            )


def _exact_ids(values, result, row_weights, count, remap):
    """The ids of the `count` rows a codebook table keeps exactly.

    With `remap`, the rows whose weighted squared error through the
    codebooks of `result` is largest (ties: the smaller id first), in
    increasing id order; else the first `count` ids.
    """
    if not remap:
        return np.arange(count)
    decoded = _decode(result.codebooks, result.codes)
    error = np.sum((np.asarray(values, np.float64) - decoded) ** 2, axis=1)
    if row_weights is not None:
        error = error * np.asarray(row_weights, np.float64)
    return np.sort(np.argsort(-error, kind="stable")[:count])


def _quantize_rotation(rotation):
    """An int8 rotation and its float32 scales, one per column (each column is one direction)."""
    return storage_lib.quantize_int8(rotation, axis=0)


def _decode(codebooks, codes):
    """Rows `concat_g codebooks[g, codes[:, g]]` `(V, groups * sub_dim)`, in numpy."""
    groups, _, sub_dim = codebooks.shape
    return codebooks[np.arange(groups), codes].reshape(len(codes), groups * sub_dim)
