"""A byte budget for one table: what each kind sizes its planned layouts to.

The budget planner (`keras_lowrank.compression.planner`) hands a
`TableBudget` to every registered kind's `plan`, which returns the layouts
of that kind worth trying. The budget knows the table's shape, what the
caller allows (storages, pruning, row selections) and the rules every kind
shares: a layout must be useful and fit, pruned tables keep at least
`MIN_ROWS` rows, and a pruned table whose rows are not the first ids pays
for its id remap table.

This is numpy plus the table description: it must not train, touch a model
or print.
"""

import dataclasses

from keras_lowrank.layers.storage import STORAGES
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import max_rows_for_bytes

# Pruned tables keep at least the padding and OOV rows and a few words.
MIN_ROWS = 8


@dataclasses.dataclass(frozen=True)
class TableBudget:
    """One table and the bytes its stored form may take.

    Args:
        input_dim: the table's number of rows (the vocabulary size).
        output_dim: the table's number of columns (the embedding size).
        budget_bytes: what the stored table may take.
        storages: the storages the caller allows.
        prune: whether vocabulary pruning may be used.
        needs_remap: `(rows, selection) -> bool`, whether keeping `rows`
            rows chosen by `selection` needs a stored id remap table
            (default: never).
        selections: the row selections of pruned layouts (`"first"`: the
            first ids, `"counts"`: the most frequent ids by token counts).
        untied_reverse: whether the table has an untied reverse table of
            the same layout: two tables share the budget.
    """

    input_dim: int
    output_dim: int
    budget_bytes: int
    storages: tuple = STORAGES
    prune: bool = True
    needs_remap: object = None
    selections: tuple = ("first",)
    untied_reverse: bool = False

    def storages_of(self, kind):
        """The allowed storages `kind` (a `TableKind`) can keep its numbers in."""
        return tuple(storage for storage in self.storages if storage in kind.storages)

    def layout(self, **fields):
        """A `TableLayout` of this table (its shape and reverse table) with `fields`."""
        return TableLayout(self.input_dim, self.output_dim, untied_reverse=self.untied_reverse, **fields)

    def fits(self, layout):
        """Whether `layout` is useful and within the budget."""
        return layout.useful and layout.stored_bytes() <= self.budget_bytes

    def remap_needed(self, rows, selection):
        """Whether keeping `rows` rows chosen by `selection` needs an id remap table."""
        return bool(self.needs_remap(rows, selection)) if self.needs_remap is not None else False

    def pruned_rows(self, storage, selection, **parameters):
        """`(rows, remap)`: the most rows (fewer than all) a kind's layout keeps within the budget.

        `parameters` name the kind as in `TableLayout`. When those rows need
        a remap table, its bytes are paid from the budget too (fewer rows).
        `rows < MIN_ROWS` means pruning cannot fit this layout.
        """
        V, d = self.input_dim, self.output_dim

        def most(input_dim=None):
            return min(V - 1, max_rows_for_bytes(d, self.budget_bytes, storage, input_dim=input_dim,
                                                 untied_reverse=self.untied_reverse, **parameters))

        rows = most()
        if rows >= MIN_ROWS and self.remap_needed(rows, selection):
            rows = most(input_dim=V)
        return rows, rows >= MIN_ROWS and self.remap_needed(rows, selection)
