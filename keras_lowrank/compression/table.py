"""One description of a compressed embedding table, and its byte count.

A compressed table is described by a `TableLayout`: how many ids it answers
(`input_dim`), how many rows it stores (vocabulary pruning) and whether an id
remap table is needed to reach them, whether the rows are a dense table or
two factors of some rank, and how the stored numbers are kept (float32,
int8 or int4 with float32 scales). The budget planner produces layouts, the
layers are built from them, and reports read them back from built layers
(`TableLayout.of`).

Byte counting has one owner: `table_bytes(layer)` counts what a built layer
stores (every variable at its stored dtype: codes, scales, zero points, group
indices, the remap table), and `TableLayout.stored_bytes()` predicts that
number before anything is built; the tests check that both agree for every
layout. This module must not train, walk models or decompose tables.
"""

import dataclasses

import numpy as np

from keras_lowrank import decomposition

STORAGES = ("float32", "int8", "int4")

# Bytes of one quantization scale: Keras and `LowRankEmbedding` keep them in
# float32.
_SCALE_BYTES = 4

# Keras' quantized `Embedding` stores per-row scales (and, for int4, zero
# points and a group index) whose exact layout is Keras' business: it is
# measured once per (width, mode) on two tiny layers instead of re-derived.
_KERAS_QUANTIZED_COST = {}


def remap_dtype(rows):
    """The integer dtype of an id remap table pointing into `rows` rows."""
    return "int16" if rows <= np.iinfo(np.int16).max else "int32"


@dataclasses.dataclass(frozen=True)
class TableLayout:
    """What a (compressed) embedding table stores.

    Args:
        input_dim: Number of ids the table answers (the vocabulary the
            model's input pipeline produces).
        output_dim: Width of each embedding vector.
        rows: Rows actually stored (`<= input_dim`); ids beyond the kept
            rows map to an out-of-vocabulary row. Defaults to `input_dim`.
        rank: Rank of the factors `A[rows, rank] @ B[rank, output_dim]`, or
            `None` for a dense table.
        storage: `"float32"`, `"int8"` or `"int4"`: how the table (dense) or
            the factors (low rank) are stored. Low rank int8/int4: `A` as
            codes with one float32 scale per row, `B` as int8 with one
            float32 scale per output column. Dense int8/int4: Keras' own
            quantized `Embedding`.
        remap: Whether an id remap table (`input_dim` small integers) is
            stored, needed when the kept rows are not the first ids.
        untied_reverse: Whether a second table of the same layout computes
            the output logits (an untied `ReversibleEmbedding` or
            `LowRankReversibleEmbedding`): it stores twice the rows.
    """

    input_dim: int
    output_dim: int
    rows: int = None
    rank: int = None
    storage: str = "float32"
    remap: bool = False
    untied_reverse: bool = False

    def __post_init__(self):
        if self.rows is None:
            object.__setattr__(self, "rows", self.input_dim)
        for name in ("input_dim", "output_dim", "rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(
                    f"Expected `{name}` to be a positive integer, received: {name}={value!r}"
                )
        if self.rows > self.input_dim:
            raise ValueError(
                f"Expected `rows` <= input_dim={self.input_dim}, received: rows={self.rows}"
            )
        if self.rank is not None and (
            isinstance(self.rank, bool) or not isinstance(self.rank, (int, np.integer)) or self.rank < 1
        ):
            raise ValueError(
                f"Expected `rank` to be None or a positive integer, received: rank={self.rank!r}"
            )
        if self.storage not in STORAGES:
            raise ValueError(
                f"Expected `storage` to be one of {STORAGES}, received: storage={self.storage!r}"
            )
        if self.remap and not self.pruned:
            raise ValueError("A remap table is only needed when rows are pruned: remap=True with rows == input_dim")

    @property
    def pruned(self):
        """Whether some ids share the out-of-vocabulary row."""
        return self.rows < self.input_dim

    @property
    def low_rank(self):
        """Whether the rows are stored as two factors."""
        return self.rank is not None

    @property
    def useful(self):
        """Whether the rank stores fewer numbers than the kept dense rows."""
        if not self.low_rank:
            return True
        return 1 <= self.rank <= decomposition.max_useful_rank(self.rows, self.output_dim)

    def float32_bytes(self):
        """Bytes of the uncompressed float32 `input_dim x output_dim` table (both, untied)."""
        return 4 * self.input_dim * self.output_dim * (2 if self.untied_reverse else 1)

    def stored_bytes(self):
        """Bytes the built layer stores (what `table_bytes` counts)."""
        if self.low_rank:
            # An untied LowRankReversibleEmbedding quantizes its reverse
            # factors exactly as its forward ones.
            total = _low_rank_bytes(self.rows, self.output_dim, self.rank, self.storage)
            total *= 2 if self.untied_reverse else 1
        else:
            total = _dense_bytes(self.rows, self.output_dim, self.storage, self.untied_reverse)
        if self.remap:
            total += self.input_dim * np.dtype(remap_dtype(self.rows)).itemsize
        return int(total)

    def params(self):
        """Stored numbers of the table proper (codes count one each, no scales)."""
        tables = 2 if self.untied_reverse else 1
        if self.low_rank:
            return tables * self.rank * (self.rows + self.output_dim)
        return tables * self.rows * self.output_dim

    def describe(self):
        """A short human description, e.g. `"rank 30 int4, 4,096/12,000 rows"`."""
        kind = f"rank {self.rank}" if self.low_rank else "dense"
        text = f"{kind} {self.storage}"
        if self.pruned:
            text += f", {self.rows:,}/{self.input_dim:,} rows"
            if self.remap:
                text += " (remap)"
        return text

    def to_dict(self):
        """The layout as a JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["stored_bytes"] = self.stored_bytes()
        return out

    @classmethod
    def of(cls, layer):
        """Reads the layout of a built embedding layer.

        Args:
            layer: a `keras.layers.Embedding` or `ReversibleEmbedding`
                (quantized or not), a `keras_lowrank.LowRankEmbedding` or
                `LowRankReversibleEmbedding`, or a
                `keras_lowrank.PrunedEmbedding` wrapping one.

        Returns:
            A `TableLayout`.
        """
        from keras_lowrank.layers import LowRankEmbedding
        from keras_lowrank.layers import PrunedEmbedding

        input_dim, remap = None, False
        if isinstance(layer, PrunedEmbedding):
            input_dim, remap = layer.input_dim, layer.remap
            layer = layer.embedding
        storage = getattr(layer, "quantization_mode", None) or "float32"
        rank = layer.rank if isinstance(layer, LowRankEmbedding) else None
        rows = int(layer.input_dim)
        return cls(
            input_dim=int(input_dim or rows),
            output_dim=int(layer.output_dim),
            rows=rows,
            rank=rank,
            storage=storage,
            remap=bool(remap),
            untied_reverse=getattr(layer, "tie_weights", True) is False,
        )


def table_bytes(layer):
    """Bytes a built embedding layer stores: every variable at its dtype.

    This is the one byte counter of the package: codes (int4 packed two per
    byte), scales, zero points, group indices and id remap tables all count,
    each variable once.

    Args:
        layer: any built Keras layer (its sublayers' variables included).

    Returns:
        The number of bytes (int).
    """
    total, seen = 0, set()
    for variable in layer.weights:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        dtype = getattr(variable.dtype, "name", variable.dtype)
        itemsize = np.dtype(str(dtype)).itemsize
        total += int(np.prod(tuple(variable.shape), dtype=np.int64)) * itemsize
    return total


def max_rank_for_bytes(rows, output_dim, budget, storage, untied_reverse=False):
    """Largest useful rank of `rows x output_dim` factors within `budget` bytes (0: none).

    With `untied_reverse`, the reverse table's factors of the same rank are
    paid from the same budget.
    """
    cap = decomposition.max_useful_rank(rows, output_dim)
    tables = 2 if untied_reverse else 1
    best = 0
    for rank in range(1, cap + 1):
        if tables * _low_rank_bytes(rows, output_dim, rank, storage) > budget:
            break
        best = rank
    return best


def max_rows_for_bytes(output_dim, budget, storage, rank=None, input_dim=None, untied_reverse=False):
    """Largest number of kept rows whose table fits `budget` bytes (0: none).

    With `input_dim`, the remap table of a pruned vocabulary (one small
    integer per id) is paid from the same budget; with `untied_reverse`, the
    reverse table of the same layout too.
    """

    def cost(rows):
        layout_bytes = (
            (2 if untied_reverse else 1) * _low_rank_bytes(rows, output_dim, rank, storage)
            if rank is not None
            else _dense_bytes(rows, output_dim, storage, untied_reverse)
        )
        if input_dim is not None:
            layout_bytes += input_dim * np.dtype(remap_dtype(rows)).itemsize
        return layout_bytes

    if cost(1) > budget:
        return 0
    low, high = 1, max(1, input_dim or 1 << 31)
    while low < high:  # costs grow with rows: bisect the last fitting count
        middle = (low + high + 1) // 2
        if cost(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def _low_rank_bytes(rows, output_dim, rank, storage):
    if storage == "float32":
        return 4 * rank * (rows + output_dim)
    projection = rank * output_dim + _SCALE_BYTES * output_dim
    lookup_width = rank if storage == "int8" else (rank + 1) // 2
    return rows * lookup_width + _SCALE_BYTES * rows + projection


def _dense_bytes(rows, output_dim, storage, untied_reverse=False):
    if storage == "float32":
        return 4 * rows * output_dim * (2 if untied_reverse else 1)
    per_row, fixed = _keras_quantized_cost(output_dim, storage, untied_reverse)
    return rows * per_row + fixed


def _keras_quantized_cost(output_dim, mode, untied_reverse=False):
    key = (int(output_dim), mode, bool(untied_reverse))
    if key not in _KERAS_QUANTIZED_COST:
        import keras

        sizes = []
        for rows in (2, 3):
            # Keras quantizes an untied reverse table with its own layout.
            layer = (
                keras.layers.ReversibleEmbedding(rows, int(output_dim), tie_weights=False)
                if untied_reverse
                else keras.layers.Embedding(rows, int(output_dim))
            )
            layer.build()
            layer.quantize(mode)
            sizes.append(table_bytes(layer))
        per_row = sizes[1] - sizes[0]
        _KERAS_QUANTIZED_COST[key] = (per_row, sizes[0] - 2 * per_row)
    return _KERAS_QUANTIZED_COST[key]
