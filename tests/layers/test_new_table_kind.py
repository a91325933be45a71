"""The table seam: a kind defined outside the package plugs in by one registry entry.

A test-only kind, "float16" (every row kept, as float16, by a subclass of
Keras' `Embedding`), is registered for the duration of each test and never
named by any module of the package. The layout, the byte count, the planner,
its proxy, `compress()` and `inspect`-style decoding must all handle it
through the registry alone. References: the bytes by hand, the proxy error
written out with numpy's own float16 rounding, the returned layer's arrays.
"""

import numpy as np
import pytest

import keras

import keras_lowrank
from keras_lowrank.compression import planner
from keras_lowrank.layers import table_kinds
from keras_lowrank.layers.table_layout import TABLE_KINDS
from keras_lowrank.layers.table_layout import TableKind
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import register_table_kind
from keras_lowrank.layers.table_layout import table_bytes

pytestmark = pytest.mark.backend_agnostic

from tests.compression.test_compress_api import DIM  # noqa: E402
from tests.compression.test_compress_api import VOCAB  # noqa: E402
from tests.compression.test_compress_api import task  # noqa: E402,F401 - the fixture


@keras.saving.register_keras_serializable(package="test_new_table_kind")
class Float16Embedding(keras.layers.Embedding):
    """Keras' `Embedding` whose table is stored in float16."""

    def __init__(self, *args, **kwargs):
        kwargs["dtype"] = "float16"
        super().__init__(*args, **kwargs)


def _build(dense, layout, row_weights=None, seed=0):
    layer = Float16Embedding(layout.input_dim, layout.output_dim, mask_zero=dense.mask_zero, name=dense.name)
    layer.build()
    layer.embeddings.assign(keras.ops.convert_to_numpy(dense.embeddings).astype("float16"))
    return layer


FLOAT16 = TableKind(
    name="float16",
    layer_types=(Float16Embedding,),
    parameters=(),
    storages=("float16",),
    rows_bytes=lambda rows, output_dim, storage, untied_reverse: 2 * rows * output_dim,
    params=lambda layout: layout.rows * layout.output_dim,
    describe=lambda layout: "dense float16",
    layout_of=lambda layer: TableLayout(int(layer.input_dim), int(layer.output_dim), kind="float16",
                                        storage="float16"),
    plan=lambda budget: [(budget.layout(kind="float16", storage="float16"), None, None)],
    smallest=lambda budget: [budget.layout(kind="float16", storage="float16")],
    stored_rows=lambda layout, rows, row_weights: rows.astype(np.float16).astype(np.float64),
    build=_build,
    finalize=lambda layer, layout: None,
    decode=lambda layer: keras.ops.convert_to_numpy(layer.embeddings),
)


@pytest.fixture
def float16_kind():
    register_table_kind(FLOAT16)
    yield FLOAT16
    del TABLE_KINDS[FLOAT16.name]


def test_the_layout_counts_describes_and_round_trips_a_registered_kind(float16_kind):
    layout = TableLayout(300, 16, kind="float16", storage="float16")
    assert layout.stored_bytes() == 2 * 300 * 16
    assert layout.describe() == "dense float16"
    assert layout.rank is None and layout.table_kind is float16_kind
    assert TableLayout.from_dict(layout.to_dict()) == layout
    with pytest.raises(ValueError, match="storage"):
        TableLayout(300, 16, kind="float16")  # float32 is no storage of this kind
    dense = keras.layers.Embedding(300, 16)
    dense.build()
    layer = _build(dense, layout)
    assert table_kinds.kind_of(layer) is float16_kind  # not "dense": the most derived class wins
    assert TableLayout.of(layer) == layout and table_bytes(layer) == layout.stored_bytes()


def test_the_planner_plans_and_ranks_a_registered_kind(float16_kind):
    V, d = 200, 8
    table = np.random.default_rng(0).normal(size=(V, d))
    weights = np.arange(V, dtype=np.float64) + 1.0
    recipes = planner.plan_recipes(V, d, 2 * V * d, kinds=("float16",))
    assert [r.layout for r in recipes] == [TableLayout(V, d, kind="float16", storage="float16")]
    assert recipes[0].family == "float16"
    (ranked,) = planner.rank_recipes(recipes, table, None, weights)
    error = np.sum(weights * np.sum((table - table.astype(np.float16)) ** 2, axis=1))
    assert ranked.proxy_error == pytest.approx(error / np.sum(weights * np.sum(table**2, axis=1)))
    assert planner.plan_recipes(V, d, 2 * V * d - 1, kinds=("float16",)) == []  # one byte short
    assert planner.smallest_recipe_bytes(V, d, kinds=("float16",)) == 2 * V * d


def test_compress_builds_a_registered_kind_through_the_registry(task, float16_kind):
    model, train, val = task
    small, report = keras_lowrank.compress(
        model, train, val, size=0.5, kinds=("float16",), epochs=1, candidates=1, seed=0, verbose=0,
        return_report=True,
    )
    (layer,) = [l for l in small._flatten_layers() if isinstance(l, keras.layers.Embedding)]
    assert isinstance(layer, Float16Embedding)
    assert report.embedding_bytes == table_bytes(layer) == 2 * VOCAB * DIM
    assert [row["family"] for row in report.recipe.values()] == ["float16"]


def test_an_unregistered_kind_is_planned_nowhere(float16_kind):
    del TABLE_KINDS[float16_kind.name]
    try:
        assert all(r.layout.kind != "float16" for r in planner.plan_recipes(200, 8, 2 * 200 * 8))
        with pytest.raises(ValueError, match="kind"):
            TableLayout(200, 8, kind="float16", storage="float16")
    finally:
        register_table_kind(float16_kind)
