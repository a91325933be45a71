"""The budget planner: a byte budget -> candidate recipes for one table.

How a budget is split between vocabulary rows, rank and stored precision
matters more than any single trick (docs/reproduction.md), so the planner
does not pick one split: it lists every family of every table kind
(`keras_lowrank.layers.table_kinds`), each sized to the budget at several
splits, and orders the recipes within a family by a cheap proxy computed
without training (low rank and dense: the token-weighted reconstruction
error of the stored table, pruned ids answered by the OOV row, quantized
factors dequantized; codebooks: bits stored per row, most first). The proxy
never decides between families: `compress()`'s search compares them by
short fine-tunes on validation data (`compression.search`).

Families:
- low rank over all rows, factors in float32, int8 or int4;
- vocabulary pruning + low rank, at several ranks (each with the most rows
  its rank leaves room for), factors in float32, int8 or int4;
- vocabulary pruning alone, the kept rows in float32, or Keras' int8/int4;
- codebooks over all rows (product quantization: `groups` codes per row
  into codebooks of 16 or 256 codewords, 2 to 32 dimensions a group),
  codebooks in float32 or int8;
- codebooks over all rows plus exact rows: what a codebook shape leaves of
  the budget buys int8 rows for the ids codes serve worst (the first ids of
  a frequency-ordered vocabulary, else any ids through a stored map);
- vocabulary pruning + codebooks, the most rows each codebook shape leaves
  room for.

This module is numpy plus the table description: it must not train, touch a
model or print.
"""

import dataclasses

import numpy as np

from keras_lowrank import decomposition
from keras_lowrank.layers import storage as storage_lib
from keras_lowrank.layers.table_layout import CODEBOOK_STORAGES
from keras_lowrank.layers.table_layout import KINDS
from keras_lowrank.layers.table_layout import STORAGES
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import max_rank_for_bytes
from keras_lowrank.layers.table_layout import max_rows_for_bytes

# Pruned tables keep at least the padding and OOV rows and a few words.
MIN_ROWS = 8

# Ranks of the pruned low-rank family, as multiples of the rank the whole
# vocabulary affords: from "few rows dropped" to "a quarter of the rows".
_PRUNED_RANK_FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0)

# Codebook shapes: dimensions per group (the divisors of the width between
# 2 and 32), and codewords per codebook (4-bit and 8-bit codes).
_CODEBOOK_MAX_SUB_DIM = 32
_CODEBOOK_CODES = (16, 256)

FAMILIES = ("low-rank", "pruned+low-rank", "pruned", "codebook", "codebook+exact", "pruned+codebook")

# Exact rows are planned next to a codebook when the budget left buys at
# least this many (fewer change too little to be worth a candidate).
MIN_EXACT_ROWS = 16


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One candidate: a table layout and how its factors are fitted.

    Args:
        layout: the `TableLayout` the candidate stores.
        weighting: `"frequency"` (factors or codebooks fitted with token
            counts as row weights) or `"none"` (plain truncated SVD,
            unweighted k-means); `None` for dense.
        selection: which rows a pruned table keeps: `"first"` (the first
            ids: frequency-ordered vocabularies, no remap table) or
            `"counts"` (the most frequent ids by token counts); `None` when
            nothing is pruned.
        proxy_error: token-weighted relative squared reconstruction error of
            the stored table (lower is better), or `None` if not computed.
    """

    layout: TableLayout
    weighting: str = None
    selection: str = None
    proxy_error: float = None

    @property
    def family(self):
        kind = self.layout.kind
        if kind == "dense":
            return "pruned"
        if self.layout.exact_rows:
            kind += "+exact"
        return f"pruned+{kind}" if self.layout.pruned else kind

    def describe(self):
        text = self.layout.describe()
        if self.selection == "counts" and not self.layout.remap:
            text += ", by counts"
        if self.weighting == "frequency":
            text += ", frequency-weighted"
        return text

    def to_dict(self):
        return {
            "family": self.family,
            "layout": self.layout.to_dict(),
            "weighting": self.weighting,
            "selection": self.selection,
            "proxy_error": self.proxy_error,
        }


def plan_recipes(input_dim, output_dim, budget_bytes, *, storages=STORAGES, prune=True, needs_remap=None,
                 selections=("first",), untied_reverse=False, codebooks=True, kinds=KINDS):
    """Every recipe of every family that fits `budget_bytes` (no proxy yet).

    Args:
        input_dim: the table's number of rows (the vocabulary size).
        output_dim: the table's number of columns (the embedding size).
        budget_bytes: what the stored table may take.
        storages: which storages to consider.
        prune: whether vocabulary pruning may be used.
        needs_remap: `(rows, selection) -> bool`, whether keeping `rows`
            rows chosen by `selection` needs a stored id remap table
            (default: never). Exact rows next to a codebook use the same
            rule: they are the first ids unless `needs_remap(rows,
            "counts")` (or no `"counts"` selection is offered), and then any
            ids through a stored map.
        selections: the row selections of pruned recipes to consider
            (`"first"`, `"counts"`).
        untied_reverse: whether the table has an untied reverse table of
            the same layout (an untied reversible embedding): two tables
            share the budget.
        codebooks: whether codebook recipes may be planned (not for a
            table that computes logits: the codebook kind has no reversible
            twin).
        kinds: the table kinds recipes may use (`"dense"`: kept rows
            stored whole, i.e. pruning alone; `"low-rank"`; `"codebook"`).

    Returns:
        A list of `Recipe`, possibly empty.
    """
    V, d = int(input_dim), int(output_dim)
    needs_remap = needs_remap or (lambda rows, selection: False)
    recipes = []
    seen = set()

    def add(layout, weighting, selection=None):
        if layout.kind not in kinds:
            return
        if weighting == "frequency" and layout.low_rank and layout.rows < d:
            return  # a weighted fit needs at least as many rows as columns
        key = (layout, weighting, selection)
        if layout.useful and layout.stored_bytes() <= budget_bytes and key not in seen:
            seen.add(key)
            recipes.append(Recipe(layout, weighting, selection))

    def pruned_rows(storage, rank, selection):
        rows = min(V - 1, max_rows_for_bytes(d, budget_bytes, storage, rank=rank, untied_reverse=untied_reverse))
        if rows >= MIN_ROWS and needs_remap(rows, selection):
            rows = min(V - 1, max_rows_for_bytes(d, budget_bytes, storage, rank=rank, input_dim=V,
                                                 untied_reverse=untied_reverse))
        return rows

    def layout(**fields):
        return TableLayout(V, d, untied_reverse=untied_reverse, **fields)

    for storage in storages:
        full_rank = max_rank_for_bytes(V, d, budget_bytes, storage, untied_reverse=untied_reverse)
        if full_rank >= 1:
            for weighting in ("none", "frequency"):
                add(layout(rank=full_rank, storage=storage), weighting)
        if not prune:
            continue
        for selection in selections:
            for factor in _PRUNED_RANK_FACTORS:
                rank = min(max(2, int(round(max(full_rank, 1) * factor))), d - 1)
                rows = pruned_rows(storage, rank, selection)
                if rows < MIN_ROWS:
                    continue
                rank = min(rank, decomposition.max_useful_rank(rows, d))
                if rank < 1:
                    continue
                remap = needs_remap(rows, selection)
                if selection == "counts" and not remap:
                    continue  # the same rows as "first": already planned
                for weighting in ("none", "frequency"):
                    add(layout(rows=rows, rank=rank, storage=storage, remap=remap), weighting, selection)
            rows = pruned_rows(storage, None, selection)
            if rows >= MIN_ROWS and (selection == "first" or needs_remap(rows, selection)):
                add(layout(rows=rows, storage=storage, remap=needs_remap(rows, selection)), None, selection)
    if codebooks and not untied_reverse:
        for storage in (s for s in storages if s in CODEBOOK_STORAGES):
            for groups, codes in codebook_shapes(d):
                shape = dict(groups=groups, codes=codes, storage=storage)
                whole = layout(**shape)
                if codes <= V and whole.stored_bytes() <= budget_bytes:
                    add(whole, "frequency")
                    exact = _with_exact_rows(whole, budget_bytes, needs_remap, selections)
                    if exact is not None:
                        add(exact, "frequency")
                    continue  # every row fits: pruning would only lose rows
                if not prune:
                    continue
                for selection in selections:
                    rows = min(V - 1, max_rows_for_bytes(d, budget_bytes, storage, groups=groups, codes=codes))
                    remap = rows >= MIN_ROWS and needs_remap(rows, selection)
                    if remap:
                        rows = min(V - 1, max_rows_for_bytes(d, budget_bytes, storage, groups=groups, codes=codes,
                                                             input_dim=V))
                        remap = rows >= MIN_ROWS and needs_remap(rows, selection)
                    if rows < max(MIN_ROWS, codes) or (selection == "counts" and not remap):
                        continue
                    add(layout(rows=rows, remap=remap, **shape), "frequency", selection)
    return recipes


def _with_exact_rows(layout, budget_bytes, needs_remap, selections):
    """`layout` (a codebook over every row) plus the most exact rows the budget buys, or `None`."""

    def fill(remap):
        spare = budget_bytes - dataclasses.replace(layout, exact_rows=1, exact_remap=remap).stored_bytes()
        if spare < 0:
            return None
        count = min(1 + spare // storage_lib.vector_bytes(1, layout.output_dim, "int8"), layout.rows - layout.codes)
        while count >= MIN_EXACT_ROWS:
            # A map wide enough for many exact rows costs more per id.
            exact = dataclasses.replace(layout, exact_rows=int(count), exact_remap=remap)
            if exact.stored_bytes() <= budget_bytes:
                return exact
            count -= 1
        return None

    first = fill(False)
    if first is None:
        return None
    if "counts" in selections and not needs_remap(first.exact_rows, "counts"):
        return first
    return fill(True)


def codebook_shapes(output_dim):
    """`(groups, codes)` of the codebook recipes planned for `output_dim` columns.

    Dimensions per group are every divisor of `output_dim` between 2 and 32
    (a 50-wide table gets 2, 5, 10 and 25; a 384-wide one 2, 3, 4, 6, 8, 12,
    16, 24 and 32), each with codebooks of 16 and 256 codewords: the budget
    is best spent on the most codes a row can afford, and a wide table
    affords many shapes between "a byte per 2 dimensions" and "per 4".
    """
    sub_dims = [k for k in range(2, min(output_dim, _CODEBOOK_MAX_SUB_DIM) + 1) if output_dim % k == 0]
    return [(output_dim // sub_dim, codes) for sub_dim in sub_dims for codes in _CODEBOOK_CODES]


def smallest_recipe_bytes(input_dim, output_dim, *, storages=STORAGES, prune=True, untied_reverse=False,
                          kinds=KINDS):
    """Bytes of the smallest recipe any family can build (for error messages).

    Returns:
        An integer, or `None` when no family can build any recipe for the
        table (too small for a useful rank, and to keep `MIN_ROWS` rows of
        fewer than its own).
    """
    V, d = int(input_dim), int(output_dim)
    layouts = [TableLayout(V, d, rank=1, storage=s, untied_reverse=untied_reverse) for s in storages]
    # Pruning keeps at least MIN_ROWS rows and fewer than the table has (plan_recipes).
    if prune and V > MIN_ROWS:
        layouts += [TableLayout(V, d, rows=MIN_ROWS, storage=s, untied_reverse=untied_reverse) for s in storages]
    if not untied_reverse:
        for storage in (s for s in storages if s in CODEBOOK_STORAGES):
            for groups, codes in codebook_shapes(d):
                rows = codes if prune and codes < V else V
                if codes <= rows and (rows == V or rows >= MIN_ROWS):
                    layouts.append(TableLayout(V, d, rows=rows, groups=groups, codes=codes, storage=storage))
    sizes = [layout.stored_bytes() for layout in layouts if layout.useful and layout.kind in kinds]
    return min(sizes) if sizes else None


def rank_recipes(recipes, table, kept_rows, weights, oov_id=1):
    """Returns the recipes with their proxy error, best (lowest) first.

    Args:
        recipes: from `plan_recipes`.
        table: the trained float table `[V, d]`.
        kept_rows: `(rows, selection) -> sorted kept ids` (the pruning rule,
            which always keeps `oov_id`).
        weights: per-id weights of the proxy and of frequency-weighted fits
            (token counts + 1), shape `[V]`.
        oov_id: the id whose row pruned ids share.
    """
    table = np.asarray(table, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    norm = float(np.sum(weights * np.sum(table**2, axis=1))) or 1.0
    ranked = []
    for recipe in recipes:
        if recipe.layout.kind == "codebook":
            # k-means per recipe would cost more than it tells: within the
            # family, more bits per row first (no reconstruction error).
            ranked.append(recipe)
            continue
        approx = _stored_table(recipe, table, kept_rows, weights, oov_id)
        error = float(np.sum(weights * np.sum((table - approx) ** 2, axis=1))) / norm
        ranked.append(dataclasses.replace(recipe, proxy_error=error))
    ranked.sort(key=_proxy_order)
    return ranked


def _proxy_order(recipe):
    layout = recipe.layout
    if layout.kind == "codebook":
        bits = layout.groups * storage_lib.bits_per_code(layout.codes)
        # Next to the same codes, more exact rows first (int8 codebooks leave
        # room for more of them).
        return (1, -bits * layout.rows, -layout.exact_rows, -layout.stored_bytes())
    return (0, recipe.proxy_error, layout.stored_bytes())


def choose_candidates(ranked, count):
    """The `count` recipes the search starts from: families taken in turn.

    The proxy orders recipes within a family only, so the families take
    turns: the best of each (families ordered by their best proxy, codebook
    families last), then the second of each, and so on, until `count`
    recipes are chosen.
    """
    by_family = {}
    for recipe in ranked:
        by_family.setdefault(recipe.family, []).append(recipe)
    # Families with a reconstruction proxy by their best recipe's, then the
    # codebook families (no proxy) by bits stored.
    queues = sorted((by_family[f] for f in FAMILIES if f in by_family), key=lambda q: _proxy_order(q[0]))
    chosen = []
    depth = 0
    while len(chosen) < count and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(chosen) < count:
                chosen.append(queue[depth])
        depth += 1
    return chosen


def _stored_table(recipe, table, kept_rows, weights, oov_id):
    """What the recipe's stored table answers for every id, in float64."""
    layout = recipe.layout
    kept = kept_rows(layout.rows, recipe.selection) if layout.pruned else np.arange(layout.input_dim)
    rows = table[kept]
    if layout.low_rank:
        row_weights = weights[kept] if recipe.weighting == "frequency" else None
        factors = decomposition.factorize_table(rows, layout.rank, row_weights=row_weights)
        lookup, projection = np.asarray(factors.lookup, np.float64), np.asarray(factors.projection, np.float64)
        if layout.storage != "float32":
            lookup = storage_lib.fake_quantize(lookup, layout.storage, axis=1)
            projection = storage_lib.fake_quantize(projection, "int8", axis=0)
        rows = lookup @ projection
    else:
        rows = storage_lib.fake_quantize(rows, layout.storage, axis=1)
    if not layout.pruned:
        return rows
    answer = np.empty_like(table)
    answer[:] = rows[int(np.searchsorted(kept, oov_id))]
    answer[kept] = rows
    return answer

