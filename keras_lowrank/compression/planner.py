"""The budget planner: a byte budget -> candidate recipes for one table.

How a budget is split between vocabulary rows, rank and stored precision
matters more than any single trick (docs/reproduction.md), so the planner
does not pick one split: it asks every registered table kind
(`keras_lowrank.layers.table_kinds`) for its layouts within the budget
(`TableKind.plan`: each kind's families, sized at several splits), and
orders the recipes within a family by a cheap proxy computed without
training (the token-weighted reconstruction error of what the kind stores,
`TableKind.stored_rows`, pruned ids answered by the OOV row; a kind without
one orders its own recipes, `TableKind.order`). The proxy never decides
between families: `compress()`'s search compares them by short fine-tunes
on validation data (`compression.search`).

The families of the kinds registered today:
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

from keras_lowrank.layers import table_kinds
from keras_lowrank.layers.storage import STORAGES
from keras_lowrank.layers.table_budget import MIN_ROWS  # noqa: F401 - the pruning floor, said in errors
from keras_lowrank.layers.table_budget import TableBudget
from keras_lowrank.layers.table_layout import TableLayout


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
        """The search family: the kind, and whether rows are pruned (e.g. `"pruned+low-rank"`)."""
        return self.layout.table_kind.family_of(self.layout)

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
                 selections=("first",), untied_reverse=False, logits=False, kinds=None, weighted=True):
    """Every recipe of every kind that fits `budget_bytes` (no proxy yet).

    Args:
        input_dim: the table's number of rows (the vocabulary size).
        output_dim: the table's number of columns (the embedding size).
        budget_bytes: what the stored table may take.
        storages: which storages to consider.
        prune: whether vocabulary pruning may be used.
        needs_remap: `(rows, selection) -> bool`, whether keeping `rows`
            rows chosen by `selection` needs a stored id remap table
            (default: never).
        selections: the row selections of pruned recipes to consider
            (`"first"`, `"counts"`).
        untied_reverse: whether the table has an untied reverse table of
            the same layout (an untied reversible embedding): two tables
            share the budget, and only kinds with a reversible form apply.
        logits: whether the table computes logits (a tied head): only kinds
            with a reversible form are planned.
        kinds: the table kinds recipes may use (names in `TABLE_KINDS`;
            default every registered kind; `"dense"` alone plans pruning
            alone).
        weighted: whether token counts weight the fits. Without them,
            frequency-weighted recipes become unweighted ones (dropped where
            the kind already plans that twin).

    Returns:
        A list of `Recipe`, possibly empty.
    """
    budget = TableBudget(int(input_dim), int(output_dim), budget_bytes, storages=tuple(storages), prune=prune,
                         needs_remap=needs_remap, selections=tuple(selections), untied_reverse=untied_reverse)
    recipes, seen = [], set()
    for kind in _planned_kinds(kinds, reversible=logits or untied_reverse):
        for layout, weighting, selection in kind.plan(budget):
            if not weighted and weighting == "frequency":
                weighting = "none"
            key = (layout, weighting, selection)
            if budget.fits(layout) and key not in seen:
                seen.add(key)
                recipes.append(Recipe(layout, weighting, selection))
    return recipes


def _planned_kinds(kinds, reversible):
    names = tuple(table_kinds.TABLE_KINDS) if kinds is None else kinds
    return [
        kind for name, kind in table_kinds.TABLE_KINDS.items()
        if name in names and kind.plan is not None and (kind.reversible or not reversible)
    ]


def smallest_recipe_bytes(input_dim, output_dim, *, storages=STORAGES, prune=True, untied_reverse=False,
                          logits=False, kinds=None):
    """Bytes of the smallest recipe any kind can build (for error messages).

    Returns:
        An integer, or `None` when no kind can build any recipe for the
        table (e.g. too small for a useful rank, and to keep `MIN_ROWS` rows
        of fewer than its own).
    """
    budget = TableBudget(int(input_dim), int(output_dim), None, storages=tuple(storages), prune=prune,
                         untied_reverse=untied_reverse)
    sizes = [
        layout.stored_bytes()
        for kind in _planned_kinds(kinds, reversible=logits or untied_reverse) if kind.smallest is not None
        for layout in kind.smallest(budget) if layout.useful
    ]
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
        if recipe.layout.table_kind.stored_rows is None:
            ranked.append(recipe)  # ordered by its kind's own rule
            continue
        approx = _stored_table(recipe, table, kept_rows, weights, oov_id)
        error = float(np.sum(weights * np.sum((table - approx) ** 2, axis=1))) / norm
        ranked.append(dataclasses.replace(recipe, proxy_error=error))
    ranked.sort(key=_proxy_order)
    return ranked


def _proxy_order(recipe):
    layout = recipe.layout
    if recipe.proxy_error is None:
        order = layout.table_kind.order
        return (1, order(layout) if order is not None else (), layout.stored_bytes())
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
    # Families with a proxy by their best recipe's, then the others (their
    # kind's own order); ties in the order the kinds planned them.
    queues = sorted(by_family.values(), key=lambda q: _proxy_order(q[0]))
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
    row_weights = weights[kept] if recipe.weighting == "frequency" else None
    rows = np.asarray(layout.table_kind.stored_rows(layout, table[kept], row_weights), dtype=np.float64)
    if not layout.pruned:
        return rows
    answer = np.empty_like(table)
    answer[:] = rows[int(np.searchsorted(kept, oov_id))]
    answer[kept] = rows
    return answer
