"""`PrunedEmbedding`: an embedding table that keeps only some vocabulary rows.

Vocabulary pruning keeps the rows of the most frequent ids and sends every
other id to the out-of-vocabulary (OOV) row, while the model still takes the
ids its input pipeline produces. This module holds the layer that does the id
mapping in front of any embedding layer (`keras.layers.Embedding` or
`ReversibleEmbedding`, quantized or not, or `LowRankEmbedding` and
`LowRankReversibleEmbedding`). It must not choose which rows to keep (that is
`keras_lowrank.compression.prune_vocabulary`).
"""

import numpy as np
from keras import KerasTensor
from keras import backend
from keras import layers
from keras import ops
from keras import saving
from keras.saving import register_keras_serializable

from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import remap_dtype

# Largest vocabulary: ids and rows are int32 indices.
_MAX_INPUT_DIM = 2**31 - 1


@register_keras_serializable(package="keras_lowrank")
class PrunedEmbedding(layers.Layer):
    """Looks up ids of a large vocabulary in a table holding fewer rows.

    The wrapped `embedding` stores `rows` rows. Ids are mapped to those rows
    before the lookup, in one of two ways:

    - Ordered vocabulary (`remap=False`): the kept rows are ids
      `0 .. rows - 1` (Keras' `TextVectorization` and `StringLookup` number
      their vocabularies by descending frequency, so the most frequent ids
      come first). An id `>= rows` becomes `oov_id`. Nothing is stored.
    - Any vocabulary (`remap=True`): a table of `input_dim` small integers
      (`int16` when `rows` fits, else `int32`) holds each id's row. It is
      stored with the layer and counted in its bytes.

    The mask (with `mask_zero`) is computed from the original ids. Negative
    ids and ids `>= input_dim` are out of the vocabulary and map to `oov_id`,
    whatever their integer dtype: an `int64` id beyond the `int32` range is
    compared as it is, never wrapped into the vocabulary.

    When the wrapped table is reversible (`keras.layers.ReversibleEmbedding`
    or `keras_lowrank.LowRankReversibleEmbedding`), `reverse=True` returns
    logits over all `input_dim` ids, exactly those of the full-vocabulary
    table in which every pruned id holds the OOV row: the kept rows' logits
    are computed and each id takes its row's logit. A pruned id is thus
    exactly as likely as the OOV token, which a text classifier never sees
    (it does not call `reverse`) but a language model generating from the
    table does.

    Example:

    ```python
    inner = keras.layers.Embedding(1000, 64)           # the 1000 kept rows
    layer = keras_lowrank.PrunedEmbedding(20_000, inner, oov_id=1)
    layer(np.array([[5, 19_999]]))                     # 19_999 -> row 1
    ```

    Args:
        input_dim: Integer, size of the vocabulary the inputs come from, at
            most `2**31 - 1` (rows are `int32` indices, as in Keras'
            `Embedding`).
        embedding: The embedding layer of the kept rows (its `input_dim` is
            the number of rows kept, at most `input_dim`).
        oov_id: Integer, the row that every pruned id maps to (in the kept
            rows' ids, `[0, rows)`). Defaults to 1.
        remap: Boolean, whether a stored id remap table is used (see above);
            fill it with `set_id_map`. Defaults to `False`.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: integer ids of any shape, in `[0, input_dim)`; with
            `reverse=True`, hidden states `(..., output_dim)`.
        reverse: Boolean (reversible tables only): return logits over the
            `input_dim` ids instead of embeddings. Defaults to `False`.

    Input shape:
        Integer tensor `(d1, ..., dn)`; `(d1, ..., dn, output_dim)` with
        `reverse=True`.

    Output shape:
        `(d1, ..., dn, output_dim)`; `(d1, ..., dn, input_dim)` with
        `reverse=True`.
    """

    def __init__(self, input_dim, embedding, oov_id=1, remap=False, **kwargs):
        if isinstance(embedding, dict):
            embedding = saving.deserialize_keras_object(embedding)
        if not isinstance(embedding, layers.Layer) or not hasattr(embedding, "output_dim"):
            raise ValueError(
                "Expected `embedding` to be an embedding layer (with `input_dim` and "
                f"`output_dim`), received: embedding={embedding!r}"
            )
        if (
            isinstance(input_dim, (bool, np.bool_))
            or not isinstance(input_dim, (int, np.integer))
            or not 1 <= input_dim <= _MAX_INPUT_DIM
        ):
            raise ValueError(
                f"Expected `input_dim` to be a positive integer of at most {_MAX_INPUT_DIM} (rows are int32 "
                f"indices), received: input_dim={input_dim!r}"
            )
        rows = int(embedding.input_dim)
        if rows > input_dim:
            raise ValueError(
                f"Expected `embedding` to keep at most input_dim={input_dim} rows, "
                f"received an embedding of {rows} rows"
            )
        if isinstance(oov_id, (bool, np.bool_)) or not isinstance(oov_id, (int, np.integer)) or not 0 <= oov_id < rows:
            raise ValueError(
                f"Expected `oov_id` to be a row of the kept table, in [0, {rows}), received: oov_id={oov_id!r}"
            )
        if not isinstance(remap, (bool, np.bool_)):
            raise ValueError(f"Expected `remap` to be a boolean, received: remap={remap!r}")
        # The wrapper computes in the table's dtypes; a quantized table's
        # policy would make it look quantized itself.
        policy = embedding.dtype_policy
        kwargs.setdefault("dtype", policy if policy.quantization_mode is None else policy.compute_dtype)
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.embedding = embedding
        self.oov_id = int(oov_id)
        self.remap = bool(remap)
        self.mask_zero = bool(getattr(embedding, "mask_zero", False))
        self.supports_masking = self.mask_zero
        self.autocast = False

    def build(self, input_shape=None):
        if self.built:
            return
        if not self.embedding.built:
            self.embedding.build(input_shape)
        if self.remap:
            self.id_map = self.add_weight(
                name="id_map",
                shape=(self.input_dim,),
                initializer="zeros",
                dtype=remap_dtype(self.rows),
                trainable=False,
            )
        self.built = True

    @property
    def rows(self):
        """Number of rows the wrapped table stores."""
        return int(self.embedding.input_dim)

    @property
    def output_dim(self):
        return int(self.embedding.output_dim)

    @property
    def embeddings(self):
        """The `(input_dim, output_dim)` table the layer answers, in float32.

        For inspection only: every id's vector, pruned ids sharing the OOV
        row. `call` never builds it.
        """
        return self.embedding.embeddings if not self.pruned else ops.take(
            ops.cast(self.embedding.embeddings, "float32"), self._map_ids(ops.arange(self.input_dim)), axis=0
        )

    def table_layout(self):
        """The `keras_lowrank.TableLayout`: the wrapped table's, over `input_dim` ids."""
        inner = TableLayout.of(self.embedding)
        return inner.replace(input_dim=int(self.input_dim), remap=bool(self.remap))

    @property
    def pruned(self):
        return self.rows < self.input_dim

    @property
    def reversible(self):
        """Whether the wrapped table takes `reverse=True` (tied logits)."""
        from keras_lowrank.layers.low_rank_reversible_embedding import LowRankReversibleEmbedding

        return isinstance(self.embedding, (layers.ReversibleEmbedding, LowRankReversibleEmbedding))

    def call(self, inputs, reverse=False):
        if reverse:
            self._check_reversible()
            logits = self.embedding(inputs, reverse=True)
            if not self.pruned:
                return logits
            # Each id's logit is its row's: never a V x d table, one gather
            # of the `rows` logits.
            return ops.take(logits, self._map_ids(ops.arange(self.input_dim)), axis=-1)
        return self.embedding(self._map_ids(inputs))

    def compute_mask(self, inputs, mask=None):
        # Keras asks for the mask of the reverse call too, whose inputs are
        # float hidden states: logits carry no mask.
        if not self.mask_zero or not backend.is_int_dtype(inputs.dtype):
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return (*input_shape[:-1], self.input_dim)
        return (*input_shape, self.output_dim)

    def compute_output_spec(self, inputs, reverse=False):
        if reverse:
            self._check_reversible()
            spec = self.embedding.compute_output_spec(inputs, reverse=True)
            return KerasTensor(self.compute_output_shape(inputs.shape, reverse=True), dtype=spec.dtype)
        spec = self.embedding.compute_output_spec(inputs)
        return KerasTensor(self.compute_output_shape(inputs.shape), dtype=spec.dtype)

    def _check_reversible(self):
        if not self.reversible:
            raise ValueError(
                f"`reverse=True` needs a reversible table (ReversibleEmbedding or "
                f"LowRankReversibleEmbedding); layer '{self.name}' wraps a "
                f"{type(self.embedding).__name__}"
            )

    def set_id_map(self, id_map):
        """Sets the stored remap table (`remap=True` only): `id_map[id] = row`.

        Args:
            id_map: 1-D integer array of `input_dim` entries, each a row of
                the kept table (in `[0, rows)`). Several ids may share a row
                (every pruned id shares `oov_id`'s).

        Raises:
            ValueError: If the layer has no remap table or `id_map` is not
                such an array. The stored table is then unchanged.
        """
        if not self.remap:
            raise ValueError(
                f"Layer '{self.name}' has no remap table (remap=False): `set_id_map` needs a PrunedEmbedding "
                "built with remap=True."
            )
        values = ops.convert_to_numpy(id_map) if ops.is_tensor(id_map) else np.asarray(id_map)
        expected = (
            f"Expected `id_map` to be a 1-D integer array of {self.input_dim} entries in [0, {self.rows}) "
            f"(one per id of the vocabulary)"
        )
        if values.dtype.kind not in "iu":
            raise ValueError(f"{expected}, received an array of dtype {values.dtype} and shape {values.shape}")
        if values.shape != (self.input_dim,):
            raise ValueError(f"{expected}, received an array of shape {values.shape}")
        outside = (values < 0) | (values >= self.rows)
        if outside.any():
            bad = np.flatnonzero(outside)
            raise ValueError(
                f"{expected}, received {bad.size} entries outside it, e.g. id_map[{bad[0]}]={values[bad[0]]}"
            )
        self.build()
        self.id_map.assign(values.astype(backend.standardize_dtype(self.id_map.dtype)))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_dim": self.input_dim,
                "embedding": saving.serialize_keras_object(self.embedding),
                "oov_id": self.oov_id,
                "remap": self.remap,
            }
        )
        return config

    def _map_ids(self, inputs):
        ids = inputs
        if not backend.is_int_dtype(ids.dtype):
            ids = ops.cast(ids, "int32")
        # Range checks in a dtype that holds every input id: an int64 id cast
        # to int32 first would wrap into the vocabulary (2**32 + 3 -> 3).
        wide = backend.standardize_dtype(ids.dtype) in ("int64", "uint32", "uint64")
        ids = ops.cast(ids, "int64" if wide else "int32")
        outside = ops.logical_or(ops.less(ids, 0), ops.greater_equal(ids, self.input_dim))
        ids = ops.cast(ops.where(outside, 0, ids), "int32")
        if self.remap:
            rows = ops.cast(ops.take(self.id_map, ids, axis=0), "int32")
            return ops.where(outside, self.oov_id, rows)
        pruned = ops.logical_or(outside, ops.greater_equal(ids, self.rows))
        return ops.where(pruned, self.oov_id, ids)
