"""One description of an embedding table, the kinds it may be, and its bytes.

A table is described by a `TableLayout`: how many ids it answers
(`input_dim`), how many rows it stores (vocabulary pruning) and whether an id
remap table is needed to reach them, its kind (`"dense"`, `"low-rank"`,
`"codebook"`, ...) with that kind's parameters (`rank`; `groups`, `codes`,
...), and how the stored numbers are kept (`layers.storage`). The budget
planner produces layouts, the layers are built from them, and every table
layer reports its own (`table_layout()`, read by `TableLayout.of`).

Everything that differs between kinds belongs to the kind: a `TableKind`
holds its parameters, its byte arithmetic, its description, how it plans a
budget, how it is built from a trained table and finished after the
fine-tune. The kinds live in `keras_lowrank.layers.kinds` (one module each)
and are registered, in one place, by `keras_lowrank.layers.table_kinds`;
this module knows none of them.

Byte counting has one owner: `table_bytes(layer)` counts what a built layer
stores (every variable at its stored dtype: codes, scales, zero points, group
indices, the remap table), and `TableLayout.stored_bytes()` predicts that
number before anything is built (the kind's `rows_bytes` plus the remap
table); the tests check that both agree for every layout. This is a leaf: it
imports no layer of this package, and must not train, walk models or
decompose tables.
"""

import dataclasses
import types

import numpy as np

from keras_lowrank.layers import storage as storage_lib

# The default of a kind parameter every layout of the kind must give.
REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class TableKind:
    """One way of storing a table's rows, and everything that depends on it.

    Args:
        name: the kind, as `TableLayout.kind` says it.
        layer_types: the layer classes storing this kind (the most derived
            match wins, so a kind whose layers subclass another kind's is
            found first).
        parameters: `((name, default), ...)`: the kind's layout parameters,
            `REQUIRED` for those a layout must give.
        storages: the storages (`layers.storage`) its numbers may be kept in.
        rows_bytes: `(rows, output_dim, storage, untied_reverse, **parameters)
            -> int`: bytes of `rows` stored rows (no remap table).
        params: `(layout) -> int`: stored numbers of the table proper (codes
            count one each, no scales).
        describe: `(layout) -> str`: the kind's part of a description, e.g.
            `"rank 30 int4"`.
        check: `(layout) -> None`: raises a `ValueError` naming the
            parameter for parameters that make no table of this kind.
        useful: `(layout) -> bool`: whether the layout stores fewer numbers
            than the kept dense rows.
        layout_of: `(layer) -> TableLayout` for layers that do not report
            their own (`table_layout()`): Keras' `Embedding`.
        plan: `(budget) -> iterable of (layout, weighting, selection)`: every
            layout of this kind worth trying within a
            `keras_lowrank.layers.table_budget.TableBudget`, or `None` for
            a kind the planner never proposes.
        smallest: `(budget) -> iterable of layouts`: the smallest layouts
            `plan` could ever propose for the budget's table (whatever its
            bytes), for error messages.
        stored_rows: `(layout, rows, row_weights) -> rows`: what the stored
            form answers for the kept float64 `rows` (the planner's proxy
            measures its weighted error), or `None`: no proxy, the kind's
            recipes are ordered by `order`.
        order: `(layout) -> sort key` of recipes without a proxy (first is
            tried first).
        family: `(layout) -> str`: the search family of a layout (the
            search lets families take turns); default: the kind's name,
            prefixed `"pruned+"` for a pruned table.
        build: `(dense_layer, layout, row_weights, seed) -> layer`: the
            trainable replacement of a trained dense table for `layout`
            (same name, `mask_zero` and dtype policy), or `None` when the
            kind is not built from a dense table (dense itself).
        finalize: `(layer, layout) -> None`: turns the fine-tuned layer
            into what `layout` stores (quantization, frozen codes).
        decode: `(layer) -> array`: the `(input_dim, output_dim)` rows the
            layer answers (for inspection).
        traced_for_export: `(layer) -> context manager` entered while an
            exporter traces the model (`export_tflite`), or `None`: e.g. the
            codebook kind hands its rotation over as a constant kernel.
        factorized: whether rows are computed from stored parts (no
            `input_dim x output_dim` array exists once stored).
        prunable: whether `prune_vocabulary` may subset its rows.
        foldable: whether export folds it into its consumer
            (`keras_lowrank.export.fold_projections`: low rank's `B`).
        reversible: whether it can compute logits (`reverse=True`, tied LM
            heads) and describe an untied reverse table: a kind that cannot
            is never planned for such a table.
    """

    name: str
    layer_types: tuple
    parameters: tuple
    storages: tuple
    rows_bytes: object
    params: object
    describe: object
    check: object = None
    useful: object = None
    layout_of: object = None
    plan: object = None
    smallest: object = None
    stored_rows: object = None
    order: object = None
    family: object = None
    build: object = None
    finalize: object = None
    decode: object = None
    traced_for_export: object = None
    factorized: bool = False
    prunable: bool = False
    foldable: bool = False
    reversible: bool = False

    @property
    def parameter_names(self):
        return tuple(name for name, _ in self.parameters)

    def family_of(self, layout):
        """The search family of `layout` (a layout of this kind)."""
        if self.family is not None:
            return self.family(layout)
        return f"pruned+{self.name}" if layout.pruned else self.name

    def decoded_table(self, layer):
        """The `(input_dim, output_dim)` float32 rows `layer` answers (for inspection)."""
        return np.asarray(self.decode(layer), dtype=np.float32)


# The registry: kind name -> `TableKind`, in registration order (filled by
# `keras_lowrank.layers.table_kinds`, which imports every kind module).
TABLE_KINDS = {}


def register_table_kind(kind):
    """Adds `kind` (a `TableKind`) to the registry; returns it."""
    if kind.name in TABLE_KINDS:
        raise ValueError(f"Table kind {kind.name!r} is already registered")
    TABLE_KINDS[kind.name] = kind
    return kind


def table_kind(name):
    """The registered `TableKind` called `name`."""
    if name not in TABLE_KINDS:
        raise ValueError(f"Expected `kind` to be one of {tuple(TABLE_KINDS)}, received: kind={name!r}")
    return TABLE_KINDS[name]


def remap_dtype(rows):
    """The integer dtype of an id remap table pointing into `rows` rows."""
    return "int16" if rows <= np.iinfo(np.int16).max else "int32"


class TableLayout:
    """What an embedding table stores.

    Args:
        input_dim: Number of ids the table answers (the vocabulary the
            model's input pipeline produces).
        output_dim: Width of each embedding vector.
        rows: Rows actually stored (`<= input_dim`); ids beyond the kept
            rows map to an out-of-vocabulary row. Defaults to `input_dim`.
        storage: How the numbers are kept (see `keras_lowrank.layers.storage`
            and each kind's `storages`).
        remap: Whether an id remap table (`input_dim` small integers) is
            stored, needed when the kept rows are not the first ids.
        untied_reverse: Whether a second table of the same layout computes
            the output logits (an untied reversible embedding): it stores
            twice the rows.
        kind: The table kind (a name in `TABLE_KINDS`). Defaults to the one
            kind whose parameters are given (`"dense"` when none is).
        **parameters: The kind's parameters, e.g. `rank=30` (low rank) or
            `groups=16, codes=256` (codebook). They read as attributes
            (`layout.rank`); another kind's parameter reads as `None`.

    Layouts are immutable and hashable; `replace(**changes)` returns a
    changed copy.
    """

    _FIELDS = ("input_dim", "output_dim", "rows", "storage", "remap", "untied_reverse")

    def __init__(self, input_dim, output_dim, rows=None, *, storage="float32", remap=False,
                 untied_reverse=False, kind=None, **parameters):
        for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            _check_positive(name, value)
        rows = input_dim if rows is None else rows
        _check_positive("rows", rows)
        if rows > input_dim:
            raise ValueError(f"Expected `rows` <= input_dim={input_dim}, received: rows={rows}")
        kind = table_kind(kind) if kind is not None else _kind_of_parameters(parameters)
        unknown = sorted(set(parameters) - set(kind.parameter_names))
        if unknown:
            raise ValueError(
                f"A {kind.name} table takes {_parameter_list(kind)}, received: "
                + ", ".join(f"{name}={parameters[name]!r}" for name in unknown)
            )
        missing = [name for name, default in kind.parameters if default is REQUIRED and name not in parameters]
        if missing:
            raise ValueError(
                f"A {kind.name} table needs {_parameter_list(kind, required=True)} together, received: "
                + ", ".join(f"{name}={value!r}" for name, value in parameters.items())
            )
        values = tuple((name, parameters.get(name, default)) for name, default in kind.parameters)
        for name, value in zip(self._FIELDS, (int(input_dim), int(output_dim), int(rows), storage, bool(remap),
                                              bool(untied_reverse))):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "kind", kind.name)
        object.__setattr__(self, "_values", values)
        # Read on every parameter access (`layout.rank`): a mapping once.
        object.__setattr__(self, "_parameters", dict(values))
        storage_lib.check_storage(storage, allowed=kind.storages)
        if untied_reverse and not kind.reversible:
            raise ValueError(
                f"A {kind.name} table has no reversible twin: untied_reverse=True is not supported"
            )
        if remap and not self.pruned:
            raise ValueError("A remap table is only needed when rows are pruned: remap=True with rows == input_dim")
        if kind.check is not None:
            kind.check(self)

    def __getattr__(self, name):
        # Only reached for names that are no attribute: the kinds' parameters.
        if name.startswith("_"):
            raise AttributeError(name)
        parameters = self._parameters
        if name in parameters:
            return parameters[name]
        if any(name in kind.parameter_names for kind in TABLE_KINDS.values()):
            return None
        raise AttributeError(f"'TableLayout' object has no attribute {name!r}")

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def _key(self):
        return tuple(getattr(self, name) for name in self._FIELDS) + (self.kind, self._values)

    def __eq__(self, other):
        return isinstance(other, TableLayout) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        fields = [f"{name}={getattr(self, name)!r}" for name in self._FIELDS]
        fields.append(f"kind={self.kind!r}")
        fields += [f"{name}={value!r}" for name, value in self._values]
        return f"TableLayout({', '.join(fields)})"

    def __reduce__(self):
        return (_rebuild, (self.to_fields(),))

    @property
    def parameters(self):
        """The kind's parameters, `{name: value}` (read-only)."""
        return types.MappingProxyType(self._parameters)

    @property
    def table_kind(self):
        """The registered `TableKind` of this layout."""
        return table_kind(self.kind)

    def replace(self, **changes):
        """A copy with `changes` (fields or the kind's parameters)."""
        return TableLayout(**{**self.to_fields(), **changes})

    def to_fields(self):
        """The constructor's arguments that rebuild this layout."""
        return {**{name: getattr(self, name) for name in self._FIELDS}, "kind": self.kind, **dict(self._values)}

    @property
    def pruned(self):
        """Whether some ids share the out-of-vocabulary row."""
        return self.rows < self.input_dim

    @property
    def useful(self):
        """Whether the layout stores fewer numbers than the kept dense rows."""
        useful = self.table_kind.useful
        return True if useful is None else bool(useful(self))

    def float32_bytes(self):
        """Bytes of the uncompressed float32 `input_dim x output_dim` table (both, untied)."""
        return 4 * self.input_dim * self.output_dim * (2 if self.untied_reverse else 1)

    def stored_bytes(self):
        """Bytes the built layer stores (what `table_bytes` counts)."""
        total = self.table_kind.rows_bytes(self.rows, self.output_dim, self.storage, self.untied_reverse,
                                           **dict(self._values))
        if self.remap:
            total += self.input_dim * np.dtype(remap_dtype(self.rows)).itemsize
        return int(total)

    def params(self):
        """Stored numbers of the table proper (codes count one each, no scales)."""
        return int(self.table_kind.params(self))

    def describe(self):
        """A short human description, e.g. `"rank 30 int4, 4,096/12,000 rows"`."""
        text = self.table_kind.describe(self)
        if self.pruned:
            text += f", {self.rows:,}/{self.input_dim:,} rows"
            if self.remap:
                text += " (remap)"
        return text

    def to_dict(self):
        """The layout as a JSON-ready dict (with its `kind` and `stored_bytes`)."""
        return {**self.to_fields(), "stored_bytes": self.stored_bytes()}

    @classmethod
    def from_dict(cls, fields):
        """The layout a `to_dict()` dict describes (derived entries ignored).

        Records written before a kind's parameters had defaults, or listing
        every kind's parameters with `None`, read as well: entries that are
        not this kind's parameters are ignored.
        """
        kind = table_kind(fields["kind"]) if fields.get("kind") else _kind_of_parameters(
            {k: v for k, v in fields.items() if v is not None and k not in cls._FIELDS and _is_parameter(k)}
        )
        known = set(cls._FIELDS) | set(kind.parameter_names)
        return cls(kind=kind.name, **{k: v for k, v in fields.items() if k in known and v is not None})

    @classmethod
    def of(cls, layer):
        """Reads the layout of a built embedding layer.

        Every table layer of this package reports its own layout
        (`table_layout()`); the kinds describe the layers that do not
        (Keras' `Embedding` and `ReversibleEmbedding`, float or quantized).

        Args:
            layer: an embedding table layer of any registered kind
                (`PrunedEmbedding` wrapping one included).

        Returns:
            A `TableLayout`.

        Raises:
            ValueError: for a layer that is no embedding table.
        """
        describe = getattr(layer, "table_layout", None)
        if callable(describe):
            return describe()
        kind = kind_of_layer(layer)
        if kind is None or kind.layout_of is None:
            raise ValueError(
                f"Expected an embedding table layer, received: layer='{getattr(layer, 'name', layer)}' "
                f"(of type {type(layer).__name__})"
            )
        return kind.layout_of(layer)


def kind_of_layer(layer):
    """The registered `TableKind` whose layer types hold `layer` (most derived match), or `None`."""
    mro = type(layer).__mro__
    matches = [
        (min(mro.index(t) for t in kind.layer_types if isinstance(layer, t)), kind)
        for kind in TABLE_KINDS.values() if isinstance(layer, kind.layer_types)
    ]
    return min(matches, key=lambda match: match[0])[1] if matches else None


def _rebuild(fields):
    return TableLayout(**fields)


def _is_parameter(name):
    return any(name in kind.parameter_names for kind in TABLE_KINDS.values())


def _parameter_list(kind, required=False):
    names = [f"`{name}`" for name, default in kind.parameters if not required or default is REQUIRED]
    return ", ".join(names) if names else "no parameters"


def _kind_of_parameters(parameters):
    """The one registered kind whose parameters `parameters` names (dense for none)."""
    if not parameters:
        return table_kind("dense")
    owners = [kind for kind in TABLE_KINDS.values() if set(parameters) & set(kind.parameter_names)]
    received = ", ".join(f"{name}={value!r}" for name, value in parameters.items())
    if not owners:
        known = "; ".join(f"{k.name}: {_parameter_list(k)}" for k in TABLE_KINDS.values() if k.parameters)
        raise ValueError(f"Unknown table parameters, received: {received} (the kinds take {known})")
    # The kind whose required parameters are all given; its own checks then
    # name any parameter it does not take.
    complete = [
        kind for kind in owners
        if all(name in parameters for name, default in kind.parameters if default is REQUIRED)
    ]
    if len(owners) == 1 or len(complete) == 1:
        return owners[0] if len(owners) == 1 else complete[0]
    names = " or ".join(f"a {kind.name} table ({_parameter_list(kind, required=True)})" for kind in owners)
    raise ValueError(f"Expected the parameters of one kind, {names}, not both; received: {received}")


def _check_positive(name, value, expected="a positive integer"):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Expected `{name}` to be {expected}, received: {name}={value!r}")


def check_positive_parameter(name, value):
    """Raises a `ValueError` naming `name` unless `value` is a positive integer."""
    _check_positive(name, value)


def rows_bytes(rows, output_dim, storage, untied_reverse=False, *, kind=None, **parameters):
    """Bytes of `rows` stored rows of one kind (no remap table).

    The kind is named or found from `parameters`, as in `TableLayout`.
    """
    kind = table_kind(kind) if kind is not None else _kind_of_parameters(parameters)
    values = {name: parameters.get(name, default) for name, default in kind.parameters}
    return int(kind.rows_bytes(rows, output_dim, storage, untied_reverse, **values))


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


def max_rows_for_bytes(output_dim, budget, storage, input_dim=None, untied_reverse=False, *, kind=None,
                       **parameters):
    """Largest number of kept rows whose table fits `budget` bytes (0: none).

    The kind is named or found from `parameters`, as in `TableLayout`
    (`rank=...`; `groups=..., codes=...`; none for dense rows). With
    `input_dim`, the remap table of a pruned vocabulary (one small integer
    per id) is paid from the same budget; with `untied_reverse`, the reverse
    table of the same layout too.
    """

    def cost(rows):
        layout_bytes = rows_bytes(rows, output_dim, storage, untied_reverse, kind=kind, **parameters)
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
