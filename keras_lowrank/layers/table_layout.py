"""One description of a compressed embedding table, and its byte count.

A compressed table is described by a `TableLayout`: how many ids it answers
(`input_dim`), how many rows it stores (vocabulary pruning) and whether an id
remap table is needed to reach them, its kind (a dense table, two factors of
some rank, or codes into product-quantization codebooks, optionally with some
rows stored exactly) with that kind's parameters, and how the stored numbers
are kept (`layers.storage`). The budget planner produces layouts, the layers
are built from them, and every table layer reports its own
(`table_layout()`, read by `TableLayout.of`); Keras' own `Embedding` and
`ReversibleEmbedding` are described here.

Byte counting has one owner: `table_bytes(layer)` counts what a built layer
stores (every variable at its stored dtype: codes, scales, zero points, group
indices, the remap table), and `TableLayout.stored_bytes()` predicts that
number before anything is built; the tests check that both agree for every
layout. This is a leaf: it imports no layer of this package, and must not
train, walk models or decompose tables.
"""

import dataclasses

import numpy as np

from keras_lowrank import decomposition
from keras_lowrank.layers import storage as storage_lib
from keras_lowrank.layers.storage import STORAGES

KINDS = ("dense", "low-rank", "codebook")

# How a codebook table may keep its codebooks.
CODEBOOK_STORAGES = ("float32", "int8")
MAX_CODES = 256

# Keras' quantized `Embedding` stores per-row scales (and, for int4, zero
# points and a group index) whose exact layout is Keras' business: it is
# measured once per (width, mode) on two tiny layers instead of re-derived.
_KERAS_QUANTIZED_COST = {}


def remap_dtype(rows):
    """The integer dtype of an id remap table pointing into `rows` rows."""
    return "int16" if rows <= np.iinfo(np.int16).max else "int32"


def exact_map_dtype(exact_rows):
    """The integer dtype of a codebook table's id -> exact row map.

    The map holds, for each stored row, its exact row in `[0, exact_rows)`,
    or `exact_rows` for a row answered by its codes.
    """
    return remap_dtype(exact_rows + 1)


@dataclasses.dataclass(frozen=True)
class TableLayout:
    """What a (compressed) embedding table stores.

    Args:
        input_dim: Number of ids the table answers (the vocabulary the
            model's input pipeline produces).
        output_dim: Width of each embedding vector.
        rows: Rows actually stored (`<= input_dim`); ids beyond the kept
            rows map to an out-of-vocabulary row. Defaults to `input_dim`.
        rank: Rank of the factors `A[rows, rank] @ B[rank, output_dim]` of a
            low-rank table, else `None`.
        groups: Codes per row of a codebook table (dividing `output_dim`),
            else `None`.
        codes: Codewords per codebook of a codebook table (in `[2, 256]`),
            else `None`.
        storage: How the numbers are kept (see `keras_lowrank.layers.storage`).
            Dense: `"float32"`, or Keras' own quantized `Embedding` (`"int8"`,
            `"int4"`). Low rank: `"float32"`, or `A` as int8/int4 codes with
            one float32 scale per row and `B` as int8 with one float32 scale
            per output column. Codebook: the codebooks in `"float32"` or
            `"int8"` (one float32 scale per codebook); the codes are packed
            4 bits (`codes <= 16`) or 8 bits.
        remap: Whether an id remap table (`input_dim` small integers) is
            stored, needed when the kept rows are not the first ids.
        untied_reverse: Whether a second table of the same layout computes
            the output logits (an untied `ReversibleEmbedding` or
            `LowRankReversibleEmbedding`): it stores twice the rows.
        exact_rows: Codebook tables only: how many of the stored rows are
            kept exactly, as int8 with one float32 scale per row, instead
            of their codes (the rows codes serve worst: frequent ones, and
            ones far from every codeword). Defaults to 0.
        exact_remap: Whether an id -> exact row map (one small integer per
            stored row) is stored; without it the exact rows are those of
            the first `exact_rows` ids (a frequency-ordered vocabulary).
    """

    input_dim: int
    output_dim: int
    rows: int = None
    rank: int = None
    storage: str = "float32"
    remap: bool = False
    untied_reverse: bool = False
    groups: int = None
    codes: int = None
    exact_rows: int = 0
    exact_remap: bool = False

    def __post_init__(self):
        if self.rows is None:
            object.__setattr__(self, "rows", self.input_dim)
        for name in ("input_dim", "output_dim", "rows"):
            _check_positive(name, getattr(self, name))
        if self.rows > self.input_dim:
            raise ValueError(
                f"Expected `rows` <= input_dim={self.input_dim}, received: rows={self.rows}"
            )
        for name in ("rank", "groups", "codes"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name), "None or a positive integer")
        if self.rank is not None and self.groups is not None:
            raise ValueError(
                "Expected a low-rank (`rank`) or a codebook (`groups`, `codes`) table, not both; "
                f"received: rank={self.rank}, groups={self.groups}"
            )
        if (self.groups is None) != (self.codes is None):
            raise ValueError(
                "Expected `groups` and `codes` together (a codebook table) or neither, "
                f"received: groups={self.groups}, codes={self.codes}"
            )
        if self.kind == "codebook":
            if self.output_dim % self.groups:
                raise ValueError(
                    f"Expected `groups` to divide output_dim={self.output_dim}, received: groups={self.groups}"
                )
            if not 2 <= self.codes <= MAX_CODES:
                raise ValueError(f"Expected `codes` in [2, {MAX_CODES}], received: codes={self.codes}")
            if self.untied_reverse:
                raise ValueError("A codebook table has no reversible twin: untied_reverse=True is not supported")
        storage_lib.check_storage(self.storage, allowed=CODEBOOK_STORAGES if self.kind == "codebook" else STORAGES)
        if isinstance(self.exact_rows, bool) or not isinstance(self.exact_rows, (int, np.integer)) \
                or not 0 <= self.exact_rows < self.rows:
            raise ValueError(
                f"Expected `exact_rows` to be an integer in [0, rows={self.rows}), "
                f"received: exact_rows={self.exact_rows!r}"
            )
        if self.exact_rows and self.kind != "codebook":
            raise ValueError(
                f"Only a codebook table keeps exact rows, received: exact_rows={self.exact_rows} "
                f"for a {self.kind} table"
            )
        if self.exact_remap and not self.exact_rows:
            raise ValueError("An exact-row map is only stored with exact rows: exact_remap=True with exact_rows=0")
        if self.remap and not self.pruned:
            raise ValueError("A remap table is only needed when rows are pruned: remap=True with rows == input_dim")

    @property
    def kind(self):
        """`"dense"`, `"low-rank"` or `"codebook"`: how the rows are stored."""
        if self.rank is not None:
            return "low-rank"
        if self.groups is not None:
            return "codebook"
        return "dense"

    @property
    def pruned(self):
        """Whether some ids share the out-of-vocabulary row."""
        return self.rows < self.input_dim

    @property
    def low_rank(self):
        """Whether the rows are stored as two factors."""
        return self.kind == "low-rank"

    @property
    def useful(self):
        """Whether the layout stores fewer numbers than the kept dense rows."""
        if self.kind == "low-rank":
            return 1 <= self.rank <= decomposition.max_useful_rank(self.rows, self.output_dim)
        if self.kind == "codebook":
            # A codebook holding more codewords than rows stores more than the rows.
            return self.codes <= self.rows - self.exact_rows
        return True

    def float32_bytes(self):
        """Bytes of the uncompressed float32 `input_dim x output_dim` table (both, untied)."""
        return 4 * self.input_dim * self.output_dim * (2 if self.untied_reverse else 1)

    def stored_bytes(self):
        """Bytes the built layer stores (what `table_bytes` counts)."""
        total = rows_bytes(
            self.rows, self.output_dim, self.storage, rank=self.rank, groups=self.groups, codes=self.codes,
            untied_reverse=self.untied_reverse, exact_rows=self.exact_rows, exact_remap=self.exact_remap,
        )
        if self.remap:
            total += self.input_dim * np.dtype(remap_dtype(self.rows)).itemsize
        return int(total)

    def params(self):
        """Stored numbers of the table proper (codes count one each, no scales)."""
        tables = 2 if self.untied_reverse else 1
        if self.kind == "low-rank":
            return tables * self.rank * (self.rows + self.output_dim)
        if self.kind == "codebook":
            return self.rows * self.groups + self.codes * self.output_dim + self.exact_rows * self.output_dim
        return tables * self.rows * self.output_dim

    def describe(self):
        """A short human description, e.g. `"rank 30 int4, 4,096/12,000 rows"`."""
        if self.kind == "low-rank":
            text = f"rank {self.rank} {self.storage}"
        elif self.kind == "codebook":
            text = f"codebook {self.groups}x{self.codes} {self.storage}"
            if self.exact_rows:
                text += f" + {self.exact_rows:,} exact int8 rows"
                if self.exact_remap:
                    text += " (mapped)"
        else:
            text = f"dense {self.storage}"
        if self.pruned:
            text += f", {self.rows:,}/{self.input_dim:,} rows"
            if self.remap:
                text += " (remap)"
        return text

    def to_dict(self):
        """The layout as a JSON-ready dict (with its `kind` and `stored_bytes`)."""
        out = dataclasses.asdict(self)
        out["kind"] = self.kind
        out["stored_bytes"] = self.stored_bytes()
        return out

    @classmethod
    def from_dict(cls, fields):
        """The layout a `to_dict()` dict describes (derived entries ignored)."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in fields.items() if key in names})

    @classmethod
    def of(cls, layer):
        """Reads the layout of a built embedding layer.

        Every table layer of this package reports its own layout
        (`table_layout()`); Keras' `Embedding` and `ReversibleEmbedding`
        (float or quantized) are described here.

        Args:
            layer: a `keras.layers.Embedding` or `ReversibleEmbedding`
                (quantized or not), or a table layer of `keras_lowrank`
                (`LowRankEmbedding`, `LowRankReversibleEmbedding`,
                `CodebookEmbedding`, `PrunedEmbedding` wrapping one).

        Returns:
            A `TableLayout`.

        Raises:
            ValueError: for a layer that is no embedding table.
        """
        describe = getattr(layer, "table_layout", None)
        if callable(describe):
            return describe()
        import keras

        if not isinstance(layer, keras.layers.Embedding):
            raise ValueError(
                f"Expected an embedding table layer, received: layer='{getattr(layer, 'name', layer)}' "
                f"(of type {type(layer).__name__})"
            )
        return cls(
            input_dim=int(layer.input_dim),
            output_dim=int(layer.output_dim),
            storage=getattr(layer, "quantization_mode", None) or "float32",
            untied_reverse=getattr(layer, "tie_weights", True) is False,
        )


def _check_positive(name, value, expected="a positive integer"):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Expected `{name}` to be {expected}, received: {name}={value!r}")


def rows_bytes(rows, output_dim, storage, *, rank=None, groups=None, codes=None, untied_reverse=False,
               exact_rows=0, exact_remap=False):
    """Bytes of `rows` stored rows of one kind (no remap table).

    Args:
        rows: stored rows.
        output_dim: width of a row.
        storage: the layout's storage.
        rank: the rank of a low-rank table.
        groups, codes: the codebook shape of a codebook table.
        untied_reverse: whether a reverse table of the same layout is stored.
        exact_rows, exact_remap: a codebook table's exact rows, and whether
            its id -> exact row map is stored.
    """
    if rank is not None:
        # An untied LowRankReversibleEmbedding quantizes its reverse
        # factors exactly as its forward ones.
        return (2 if untied_reverse else 1) * _low_rank_bytes(rows, output_dim, rank, storage)
    if groups is not None:
        sub_dim = output_dim // groups
        total = storage_lib.code_bytes(rows, groups, codes) + storage_lib.vector_bytes(groups, codes * sub_dim, storage)
        if exact_rows:
            total += storage_lib.vector_bytes(exact_rows, output_dim, "int8")
        if exact_remap:
            total += rows * np.dtype(exact_map_dtype(exact_rows)).itemsize
        return total
    return _dense_bytes(rows, output_dim, storage, untied_reverse)


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


def max_rows_for_bytes(output_dim, budget, storage, rank=None, input_dim=None, untied_reverse=False,
                       groups=None, codes=None):
    """Largest number of kept rows whose table fits `budget` bytes (0: none).

    The kind is given as in `TableLayout` (`rank`, or `groups` and `codes`,
    or neither for dense rows). With `input_dim`, the remap table of a pruned
    vocabulary (one small integer per id) is paid from the same budget; with
    `untied_reverse`, the reverse table of the same layout too.
    """

    def cost(rows):
        layout_bytes = rows_bytes(rows, output_dim, storage, rank=rank, groups=groups, codes=codes,
                                  untied_reverse=untied_reverse)
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
        return storage_lib.vector_bytes(rows + output_dim, rank, "float32")
    # `A`: one code vector per row; `B`: int8, one vector per output column.
    return storage_lib.vector_bytes(rows, rank, storage) + storage_lib.vector_bytes(output_dim, rank, "int8")


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
