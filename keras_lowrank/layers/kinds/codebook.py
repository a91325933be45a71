"""The codebook kind: rows as codes into product-quantization codebooks.

Stored by `CodebookEmbedding`: `groups` codes per row, packed 4 bits
(`codes <= 16`) or 8 bits, into codebooks of `codes` codewords kept in
float32 or int8 (one float32 scale per codebook); optionally `exact_rows`
rows stored whole as int8 with one float32 scale per row (the rows codes
serve worst), reached through an id -> exact row map (`exact_remap`) unless
they are the first ids; optionally (`rotate`) a fixed orthogonal rotation
the codes are taken in, stored like the codebooks.

Planned as three families: codebooks over every row (2 to 32 dimensions a
group, 16 or 256 codewords), each also rotated where the rotation fits; the
same plus the most exact rows the rest of the budget buys; and, when a
shape does not fit over every row, the vocabulary pruned to the most rows
it leaves room for. There is no cheap proxy (a k-means per recipe would
cost more than it tells): within the kind, more code bits per row are tried
first, then larger codebooks, then rotated codes, then more exact rows.
"""

import numpy as np

from keras_lowrank.layers import storage as storage_lib
from keras_lowrank.layers.codebook_embedding import CODEBOOK_DTYPES
from keras_lowrank.layers.codebook_embedding import MAX_CODES
from keras_lowrank.layers.codebook_embedding import CodebookEmbedding
from keras_lowrank.layers.codebook_embedding import exact_map_dtype
from keras_lowrank.layers.kinds import stored_table
from keras_lowrank.layers.table_budget import MIN_ROWS
from keras_lowrank.layers.table_layout import REQUIRED
from keras_lowrank.layers.table_layout import TableKind
from keras_lowrank.layers.table_layout import check_positive_parameter
from keras_lowrank.layers.table_layout import max_rows_for_bytes

# Dimensions per group of the planned shapes (the divisors of the width
# between 2 and this), and codewords per codebook (4-bit and 8-bit codes).
MAX_SUB_DIM = 32
PLANNED_CODES = (16, 256)

# Exact rows are planned next to a codebook when the budget left buys at
# least this many (fewer change too little to be worth a candidate).
MIN_EXACT_ROWS = 16

# Lloyd iterations of the k-means that starts a codebook table: its codes
# are learned during the fine-tune, so k-means only initializes them, and
# its first iterations do most of the work.
INIT_ITERATIONS = 8


def codebook_shapes(output_dim):
    """`(groups, codes)` of the codebook layouts planned for `output_dim` columns.

    Dimensions per group are every divisor of `output_dim` between 2 and 32
    (a 50-wide table gets 2, 5, 10 and 25; a 384-wide one 2, 3, 4, 6, 8, 12,
    16, 24 and 32), each with codebooks of 16 and 256 codewords: the budget
    is best spent on the most codes a row can afford, and a wide table
    affords many shapes between "a byte per 2 dimensions" and "per 4".
    """
    sub_dims = [k for k in range(2, min(output_dim, MAX_SUB_DIM) + 1) if output_dim % k == 0]
    return [(output_dim // sub_dim, codes) for sub_dim in sub_dims for codes in PLANNED_CODES]


def _rows_bytes(rows, output_dim, storage, untied_reverse, *, groups, codes, exact_rows=0, exact_remap=False,
                rotate=False):
    sub_dim = output_dim // groups
    total = storage_lib.code_bytes(rows, groups, codes) + storage_lib.vector_bytes(groups, codes * sub_dim, storage)
    if rotate:
        total += storage_lib.vector_bytes(output_dim, output_dim, storage)
    if exact_rows:
        total += storage_lib.vector_bytes(exact_rows, output_dim, "int8")
    if exact_remap:
        total += rows * np.dtype(exact_map_dtype(exact_rows)).itemsize
    return total


def _check(layout):
    for name in ("groups", "codes"):
        check_positive_parameter(name, layout.parameters[name])
    if layout.output_dim % layout.groups:
        raise ValueError(
            f"Expected `groups` to divide output_dim={layout.output_dim}, received: groups={layout.groups}"
        )
    if not 2 <= layout.codes <= MAX_CODES:
        raise ValueError(f"Expected `codes` in [2, {MAX_CODES}], received: codes={layout.codes}")
    exact_rows = layout.exact_rows
    if isinstance(exact_rows, bool) or not isinstance(exact_rows, (int, np.integer)) \
            or not 0 <= exact_rows < layout.rows:
        raise ValueError(
            f"Expected `exact_rows` to be an integer in [0, rows={layout.rows}), received: exact_rows={exact_rows!r}"
        )
    if layout.exact_remap and not exact_rows:
        raise ValueError("An exact-row map is only stored with exact rows: exact_remap=True with exact_rows=0")
    if not isinstance(layout.rotate, (bool, np.bool_)):
        raise ValueError(f"Expected `rotate` to be a boolean, received: rotate={layout.rotate!r}")


def _describe(layout):
    text = f"codebook {layout.groups}x{layout.codes} {layout.storage}"
    if layout.rotate:
        text += " rotated"
    if layout.exact_rows:
        text += f" + {layout.exact_rows:,} exact int8 rows"
        if layout.exact_remap:
            text += " (mapped)"
    return text


def _plan(budget):
    V, d = budget.input_dim, budget.output_dim
    for storage in budget.storages_of(CODEBOOK):
        for groups, codes in codebook_shapes(d):
            shape = dict(groups=groups, codes=codes, storage=storage)
            whole = budget.layout(**shape)
            if codes <= V and whole.stored_bytes() <= budget.budget_bytes:
                for layout in (whole, whole.replace(rotate=True)):
                    if layout.stored_bytes() > budget.budget_bytes:
                        continue
                    yield layout, "frequency", None
                    exact = _with_exact_rows(layout, budget)
                    if exact is not None:
                        yield exact, "frequency", None
                continue  # every row fits: pruning would only lose rows
            if not budget.prune:
                continue
            for selection in budget.selections:
                rows, remap = budget.pruned_rows(storage, selection, groups=groups, codes=codes)
                if rows < max(MIN_ROWS, codes) or (selection == "counts" and not remap):
                    continue
                yield budget.layout(rows=rows, remap=remap, **shape), "frequency", selection


def _with_exact_rows(layout, budget):
    """`layout` (a codebook over every row) plus the most exact rows the budget buys, or `None`.

    The exact rows are the first ids unless the most frequent ids are not
    (or no counts are offered), and then any ids through a stored map.
    """

    def fill(remap):
        spare = budget.budget_bytes - layout.replace(exact_rows=1, exact_remap=remap).stored_bytes()
        if spare < 0:
            return None
        count = min(1 + spare // storage_lib.vector_bytes(1, layout.output_dim, "int8"), layout.rows - layout.codes)
        while count >= MIN_EXACT_ROWS:
            # A map wide enough for many exact rows costs more per id.
            exact = layout.replace(exact_rows=int(count), exact_remap=remap)
            if exact.stored_bytes() <= budget.budget_bytes:
                return exact
            count -= 1
        return None

    first = fill(False)
    if first is None:
        return None
    if "counts" in budget.selections and not budget.remap_needed(first.exact_rows, "counts"):
        return first
    return fill(True)


def _smallest(budget):
    V, d = budget.input_dim, budget.output_dim
    layouts = []
    for storage in budget.storages_of(CODEBOOK):
        for groups, codes in codebook_shapes(d):
            rows = codes if budget.prune and codes < V else V
            if codes <= rows and (rows == V or rows >= MIN_ROWS):
                layouts.append(budget.layout(rows=rows, groups=groups, codes=codes, storage=storage))
    return layouts


def _order(layout):
    bits = layout.groups * storage_lib.bits_per_code(layout.codes)
    # At equal code bits, larger codebooks first: 256 codewords over 2k
    # dimensions can hold every pair of 16-codeword books over k dimensions,
    # so they quantize at least as well at their optimum (on MiniLM's table
    # at 5%, 64x256 + exact rows started at a validation cosine of 0.976,
    # 128x16 + more exact rows at 0.972). Next to the same codes, more exact
    # rows first (int8 codebooks leave room for more of them).
    # Rotated codes before plain ones: on MiniLM's table at 5%, 64x256
    # rotated + 211 exact rows started at a validation cosine of 0.981,
    # plain + 595 exact rows at 0.976 (trained tables put most of their
    # variance in a few directions, which plain groups code unevenly).
    return (-bits * layout.rows, -layout.codes, -int(layout.rotate), -layout.exact_rows, -layout.stored_bytes())


def _family(layout):
    name = "codebook+exact" if layout.exact_rows else "codebook"
    return f"pruned+{name}" if layout.pruned else name


def _build(layer, layout, row_weights=None, seed=0):
    # The training form: codes are learned during the fine-tune (straight
    # through the nearest codeword), then frozen by `finalize`.
    return CodebookEmbedding.from_embedding(
        layer, layout.groups, layout.codes, row_weights=row_weights, seed=seed, freeze=False,
        codebook_dtype=layout.storage, iterations=INIT_ITERATIONS,
        exact_rows=layout.exact_rows, exact_remap=layout.exact_remap, rotate=layout.rotate,
    )


def _useful(layout):
    # A codebook holding more codewords than coded rows stores more than the rows.
    return layout.codes <= layout.rows - layout.exact_rows


CODEBOOK = TableKind(
    name="codebook",
    layer_types=(CodebookEmbedding,),
    parameters=(
        ("groups", REQUIRED), ("codes", REQUIRED), ("exact_rows", 0), ("exact_remap", False), ("rotate", False),
    ),
    storages=CODEBOOK_DTYPES,
    rows_bytes=_rows_bytes,
    params=lambda layout: layout.rows * layout.groups + layout.codes * layout.output_dim
    + layout.exact_rows * layout.output_dim + int(layout.rotate) * layout.output_dim**2,
    describe=_describe,
    check=_check,
    useful=_useful,
    plan=_plan,
    smallest=_smallest,
    order=_order,
    family=_family,
    build=_build,
    finalize=lambda layer, layout: stored_table(layer).freeze_codes(),
    decode=lambda layer: layer.decoded_table(),
    traced_for_export=lambda layer: stored_table(layer).rotation_as_constant(),
    factorized=True,
)
