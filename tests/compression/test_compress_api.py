"""compress(): the API and its errors, byte accounting, selection on validation only.

A small synthetic intent task (the label is carried by a few frequent ids, as
in real intent data) keeps each run to a few seconds. Accuracy is never
asserted: the benchmark (`keras-lowrank reproduce --methods compress`) measures
it. What is asserted: the budget is met and counted from the stored arrays,
the chosen candidate is the best validation score among those tried and
equals the returned model's score, the input model is untouched, and the
result fits, saves and loads.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras

import keras_lowrank
from keras_lowrank.compression import TableLayout
from keras_lowrank.compression import planner
from keras_lowrank.layers.kinds import codebook as codebook_kind
from keras_lowrank.compression import prune_vocabulary
from keras_lowrank.compression import table_bytes
from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.layers import PrunedEmbedding

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, LENGTH, CLASSES = 300, 16, 10, 3
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
QUICK = {"epochs": 1, "candidates": 2, "verbose": 0, "seed": 0}


def _data(n, seed):
    rng = np.random.default_rng(seed)
    # Zipf-like ids: low ids are frequent, as in a frequency-ordered vocabulary.
    ids = np.minimum(rng.zipf(1.3, size=(n, LENGTH)) + 1, VOCAB - 1).astype("int32")
    labels = rng.integers(0, CLASSES, size=n)
    ids[:, 0] = 2 + labels  # the label's own frequent id
    ids[:, -2:] = 0
    return ids, labels


@pytest.fixture(scope="module")
def task():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32"),
            keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(CLASSES, name="logits"),
        ],
        name="intent",
    )
    model.compile(keras.optimizers.Adam(1e-2), LOSS, metrics=["accuracy"])
    train, val = _data(600, 1), _data(200, 2)
    model.fit(*train, epochs=3, verbose=0)
    return model, train, val


def _stored_arrays_bytes(layer):
    """Independent count: the bytes of every array the layer gives back."""
    return int(sum(np.asarray(w).nbytes for w in layer.get_weights()))


@pytest.fixture(scope="module")
def compressed(task):
    """One compress() run shared by the tests below, with the input's state before it."""
    model, train, val = task
    before = {
        "weights": [keras.ops.convert_to_numpy(w).copy() for w in model.weights],
        "outputs": keras.ops.convert_to_numpy(model(val[0])),
        "optimizer": model.optimizer,
        "trainable": model.trainable,
    }
    small, report = keras_lowrank.compress(model, train, val, size=0.1, return_report=True, **QUICK)
    return small, report, before


def test_compress_meets_the_budget_and_reports_it(compressed):
    small, report, _ = compressed
    layer = small.get_layer("embedding")
    assert report.float32_embedding_bytes == 4 * VOCAB * DIM
    assert report.budget_bytes == int(0.1 * 4 * VOCAB * DIM)
    assert report.embedding_bytes == table_bytes(layer) == _stored_arrays_bytes(layer)
    assert report.embedding_bytes <= report.budget_bytes
    assert TableLayout.of(layer).stored_bytes() == report.embedding_bytes
    assert len(report.candidates) == 2
    assert report.to_dict()["recipe"] == report.recipe
    text = str(report)
    assert "val accuracy" in text and "*" in text


def test_selection_uses_validation_data_only(task, compressed):
    _, _, val = task
    small, report, _ = compressed
    scores = [c.score for c in report.candidates if c.error is None]
    assert report.score == max(scores)
    # The reported score is the returned model's accuracy on validation data.
    logits = keras.ops.convert_to_numpy(small(val[0]))
    assert report.score == pytest.approx(float(np.mean(np.argmax(logits, -1) == val[1])), abs=1e-6)
    assert report.monitor == "accuracy" and report.mode == "max"


def test_averaged_checkpoints_are_what_the_report_scores(task):
    model, train, val = task
    small, report = keras_lowrank.compress(model, train, val, size=0.1, return_report=True,
                                           **dict(QUICK, epochs=2, checkpoint="average"))
    logits = keras.ops.convert_to_numpy(small(val[0]))
    assert report.score == pytest.approx(float(np.mean(np.argmax(logits, -1) == val[1])), abs=1e-6)
    assert report.embedding_bytes <= report.budget_bytes
    # One rung of 2 epochs: each finalist is the mean of its checkpoints after epochs 1 and 2.
    assert [c.averaged for c in report.candidates] == [2, 2]
    assert "mean of 2" in str(report)


def test_input_model_is_never_changed(task, compressed):
    model, _, val = task
    _, _, before = compressed
    for old, now in zip(before["weights"], model.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(now))
    np.testing.assert_array_equal(before["outputs"], keras.ops.convert_to_numpy(model(val[0])))
    assert model.optimizer is before["optimizer"] and model.trainable == before["trainable"]
    assert type(model.get_layer("embedding")) is keras.layers.Embedding


def test_result_fits_and_round_trips_in_a_fresh_process(task, compressed, tmp_path):
    model, train, val = task
    small = keras.models.clone_model(compressed[0])  # this test trains it: keep the fixture's intact
    small.set_weights(compressed[0].get_weights())
    assert type(compressed[0]) is type(model) and compressed[0].name == model.name
    assert compressed[0].compiled and compressed[0].loss is model.loss
    small.fit(*train, epochs=1, verbose=0)
    path = tmp_path / "small.keras"
    small.save(path)
    np.save(tmp_path / "x.npy", val[0])
    np.save(tmp_path / "y.npy", keras.ops.convert_to_numpy(small(val[0])))
    script = textwrap.dedent(
        f"""
        import numpy as np, keras, keras_lowrank
        model = keras.saving.load_model({str(path)!r})
        out = keras.ops.convert_to_numpy(model(np.load({str(tmp_path / 'x.npy')!r})))
        np.testing.assert_array_equal(out, np.load({str(tmp_path / 'y.npy')!r}))
        print("same")
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "same" in done.stdout


def test_datasets_are_accepted(task):
    tf = pytest.importorskip("tensorflow")  # tf.data: the TensorFlow backend's input type

    model, train, val = task
    train_ds = tf.data.Dataset.from_tensor_slices(train).batch(64)
    val_ds = tf.data.Dataset.from_tensor_slices(val).batch(64)
    small, report = keras_lowrank.compress(model, train_ds, val_ds, size=0.1, return_report=True, **QUICK)
    assert report.embedding_bytes <= report.budget_bytes
    assert not [n for n in report.notes if "unavailable" in n]  # counts came from the dataset


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size=64):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part], self.y[part]


def test_py_datasets_are_accepted(task):
    model, train, val = task
    small, report = keras_lowrank.compress(model, _Batches(*train), _Batches(*val), size=0.1,
                                           return_report=True, **dict(QUICK, candidates=1))
    assert report.embedding_bytes <= report.budget_bytes
    assert not [n for n in report.notes if "unavailable" in n]


def test_uncompiled_model_needs_a_loss(task):
    model, train, val = task
    bare = keras.Sequential.from_config(model.get_config())
    with pytest.raises(ValueError, match="loss="):
        keras_lowrank.compress(bare, train, val, size=0.1, **QUICK)
    bare.set_weights(model.get_weights())
    small = keras_lowrank.compress(bare, train, val, size=0.1, loss=LOSS, **dict(QUICK, epochs=0))
    assert small.compiled and small.loss is LOSS
    assert table_bytes(small.get_layer("embedding")) <= int(0.1 * 4 * VOCAB * DIM)


def test_infeasible_budget_names_the_smallest_feasible_size(task):
    model, train, val = task
    with pytest.raises(ValueError, match=r"smallest feasible is [\d,]+ bytes, size=0\.\d+"):
        keras_lowrank.compress(model, train, val, max_bytes=16, **QUICK)


def test_whole_model_budget_leaves_the_tables_what_the_other_weights_do_not_store(task):
    model, train, val = task
    # Independent count: the float32 bytes of every weight but the table's.
    other = sum(np.asarray(w).nbytes for layer in model.layers if layer.name != "embedding" for w in layer.get_weights())
    limit = other + int(0.1 * 4 * VOCAB * DIM)
    small, report = keras_lowrank.compress(model, train, val, max_model_bytes=limit, return_report=True,
                                           **dict(QUICK, epochs=0))
    assert report.budget_bytes == limit - other
    assert report.model_bytes == table_bytes(small) <= limit
    assert any("whole-model budget" in note for note in report.notes)
    with pytest.raises(ValueError, match=rf"other weights alone store {other:,} bytes"):
        keras_lowrank.compress(model, train, val, max_model_bytes=other, **QUICK)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_model_bytes": -5}, "max_model_bytes"),
        ({"max_bytes": 100, "max_model_bytes": 1000}, "exactly one"),
        ({}, "exactly one of `size`, `max_bytes` and `max_model_bytes`"),
        ({"size": 0.1, "max_bytes": 100}, "exactly one"),
        ({"size": 0.0}, "size"),
        ({"size": 1.0}, "size"),
        ({"size": True}, "size"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": 10.5}, "max_bytes"),
        ({"size": 0.1, "epochs": -1}, "epochs"),
        ({"size": 0.1, "candidates": 0}, "candidates"),
        ({"size": 0.1, "storages": ["int2"]}, "storages"),
        ({"size": 0.1, "bogus": 1}, "bogus"),
        ({"size": 0.1, "checkpoint": "last"}, r"checkpoint='last'"),
        ({"size": 0.1, "layer_names": "nope"}, "nope"),
    ],
)
def test_argument_errors(task, kwargs, match):
    model, train, val = task
    with pytest.raises(ValueError, match=match):
        keras_lowrank.compress(model, train, val, **kwargs)


def test_ids_outside_the_vocabulary_are_named(task):
    model, train, val = task
    bad = train[0].copy()
    bad[3, 2] = VOCAB + 7
    with pytest.raises(ValueError, match=rf"id {VOCAB + 7} .* \[0, {VOCAB}\)"):
        keras_lowrank.compress(model, (bad, train[1]), val, size=0.1, **QUICK)


# Every recipe the planner can produce: built the way compress() builds it,
# its stored bytes predicted by the layout, counted by table_bytes and by the
# arrays themselves, and it survives a .keras round trip.
RECIPES = [
    TableLayout(VOCAB, DIM, rank=3, storage=storage) for storage in ("float32", "int8", "int4")
] + [
    TableLayout(VOCAB, DIM, rows=60, rank=5, storage=storage, remap=remap)
    for storage in ("float32", "int8", "int4")
    for remap in (False, True)
] + [
    TableLayout(VOCAB, DIM, rows=60, storage=storage, remap=remap)
    for storage in ("float32", "int8", "int4")
    for remap in (False, True)
]


@pytest.mark.parametrize("layout", RECIPES, ids=lambda l: l.describe().replace(" ", "_"))
def test_every_recipe_counts_its_bytes_and_round_trips(task, layout, tmp_path):
    model, train, val = task
    small = model
    if layout.pruned:
        counts = np.arange(VOCAB)[::-1].astype(float) if not layout.remap else np.arange(VOCAB) % 17
        small = prune_vocabulary(small, layout.rows, counts=counts)
    if layout.kind == "low-rank":
        small = keras_lowrank.factorize_embeddings(small, rank=layout.rank)
    layer = small.get_layer("embedding")
    if layout.storage != "float32":
        (layer.embedding if isinstance(layer, PrunedEmbedding) else layer).quantize(layout.storage)
    assert TableLayout.of(layer) == layout
    assert table_bytes(layer) == layout.stored_bytes() == _stored_arrays_bytes(layer)
    expected = keras.ops.convert_to_numpy(small(val[0]))
    path = tmp_path / "recipe.keras"
    small.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(val[0])), expected)


def test_planner_recipes_all_fit_and_cover_every_family():
    budget = int(0.1 * 4 * VOCAB * DIM)
    recipes = planner.plan_recipes(VOCAB, DIM, budget, needs_remap=lambda rows, sel: sel == "counts",
                                   selections=("first", "counts"))
    assert recipes and all(r.layout.stored_bytes() <= budget for r in recipes)
    assert {r.family for r in recipes} == {"low-rank", "pruned+low-rank", "pruned", "codebook", "codebook+exact",
                                            "pruned+codebook"}
    for r in recipes:
        if r.layout.kind == "low-rank":
            assert r.layout.rank <= keras_lowrank.max_useful_rank(r.layout.rows, DIM)
    # Pruned row counts are the largest that fit: one more row would not.
    for r in recipes:
        if r.layout.pruned and r.layout.kind != "low-rank":
            bigger = r.layout.replace(rows=r.layout.rows + 1)
            assert bigger.stored_bytes() > budget


@pytest.mark.parametrize("width", [50, 64, 384])
def test_codebook_shapes_cover_every_group_width_from_2_to_32(width):
    shapes = codebook_kind.codebook_shapes(width)
    sub_dims = sorted({width // groups for groups, _ in shapes})
    assert sub_dims == [k for k in range(2, 33) if width % k == 0]
    assert all(groups * (width // groups) == width for groups, _ in shapes)
    assert sorted({codes for _, codes in shapes}) == [16, 256]
    # A wide table can spend 10% of its float32 bytes on 8-bit codes for
    # every 3 dimensions (2.7 bits a number): that shape must be planned.
    recipes = planner.plan_recipes(30522, width, int(0.1 * 4 * 30522 * width), prune=False, kinds=("codebook",))
    assert any(r.layout.groups == 128 and r.layout.codes == 256 for r in recipes) == (width == 384)


@pytest.mark.parametrize("frequency_ordered", [True, False])
def test_exact_rows_fill_what_each_codebook_leaves_of_the_budget(frequency_ordered):
    V, d = 30522, 384
    budget = int(0.1 * 4 * V * d)
    recipes = planner.plan_recipes(
        V, d, budget, prune=False, kinds=("codebook",), selections=("first", "counts"),
        needs_remap=lambda rows, selection: selection == "counts" and not frequency_ordered,
    )
    plain = {(r.layout.groups, r.layout.codes, r.layout.storage) for r in recipes if not r.layout.exact_rows}
    exact = [r for r in recipes if r.layout.exact_rows]
    assert {(r.layout.groups, r.layout.codes, r.layout.storage) for r in exact} == plain
    for recipe in exact:
        layout = recipe.layout
        assert recipe.family == "codebook+exact"
        # A frequency-ordered vocabulary keeps its first ids exact: no map.
        assert layout.exact_remap is not frequency_ordered
        whole = layout.replace(exact_rows=0, exact_remap=False).stored_bytes()
        id_map = 2 * V if layout.exact_remap else 0
        assert layout.stored_bytes() == whole + layout.exact_rows * (d + 4) + id_map <= budget
        assert layout.stored_bytes() + d + 4 > budget  # one more row would not fit
    # The search's first codebook candidates: the most code bits, then the
    # largest books, then the most exact rows (int8 codebooks leave room for
    # more).
    ranked = planner.rank_recipes(recipes, np.zeros((V, d)), None, np.ones(V))
    first = planner.choose_candidates(ranked, 2)
    assert [r.family for r in first] == ["codebook+exact", "codebook"]
    assert (first[0].layout.groups, first[0].layout.codes, first[0].layout.storage) == (128, 256, "int8")


def test_at_equal_code_bits_larger_codebooks_are_tried_first():
    # At 5% of a 30522x384 table, 64 8-bit codes and 128 4-bit codes give a
    # row the same 512 bits; the 256-codeword books come first, with or
    # without exact rows, though they leave room for fewer exact rows.
    V, d = 30522, 384
    recipes = planner.plan_recipes(V, d, int(0.05 * 4 * V * d), prune=False, kinds=("codebook",),
                                   selections=("first", "counts"))
    ranked = planner.rank_recipes(recipes, np.zeros((V, d)), None, np.ones(V))
    bits = {r.layout: r.layout.groups * (8 if r.layout.codes > 16 else 4) for r in ranked}
    top = max(bits.values())
    assert top == 512
    for family in ("codebook", "codebook+exact"):
        shapes = [(r.layout.groups, r.layout.codes) for r in ranked if r.family == family and bits[r.layout] == top]
        assert shapes.index((64, 256)) < shapes.index((128, 16))
    first = planner.choose_candidates(ranked, 3)
    assert [(r.layout.groups, r.layout.codes) for r in first[:2]] == [(64, 256), (64, 256)]
    exact = {(r.layout.groups, r.layout.codes, r.layout.storage): r.layout.exact_rows
             for r in ranked if r.layout.exact_rows}
    assert exact[(64, 256, "int8")] < exact[(128, 16, "int8")]


def test_rotated_codes_are_planned_where_the_rotation_fits_and_tried_first():
    # At 5% of a 30522x384 table an int8 rotation (384 x 384 bytes and a
    # float32 scale per column) fits next to 64 8-bit codes a row; it costs
    # the exact rows it displaces. At 2% (24 8-bit codes a row) it does not fit.
    V, d = 30522, 384
    rotation_bytes = d * d + 4 * d
    recipes = planner.plan_recipes(V, d, int(0.05 * 4 * V * d), prune=False, kinds=("codebook",),
                                   selections=("first", "counts"))
    ranked = planner.rank_recipes(recipes, np.zeros((V, d)), None, np.ones(V))
    first = planner.choose_candidates(ranked, 3)
    assert [(r.layout.groups, r.layout.codes, r.layout.rotate) for r in first[:2]] == [(64, 256, True)] * 2
    exact = {r.layout.rotate: r.layout for r in ranked
             if (r.layout.groups, r.layout.codes, r.layout.storage) == (64, 256, "int8") and r.layout.exact_rows}
    assert exact[True].exact_rows < exact[False].exact_rows
    assert exact[True].stored_bytes() - exact[True].replace(rotate=False).stored_bytes() == rotation_bytes
    small = planner.plan_recipes(V, d, int(0.02 * 4 * V * d), prune=False, kinds=("codebook",),
                                 selections=("first", "counts"))
    assert any((r.layout.groups, r.layout.codes) == (24, 256) for r in small)
    assert not any((r.layout.groups, r.layout.codes) == (24, 256) and r.layout.rotate for r in small)


def test_no_exact_rows_when_the_budget_left_buys_too_few():
    V, d = 1000, 16
    whole = TableLayout(V, d, groups=8, codes=16)
    for spare, planned in ((codebook_kind.MIN_EXACT_ROWS * (d + 4) - 1, False), (codebook_kind.MIN_EXACT_ROWS * (d + 4), True)):
        recipes = planner.plan_recipes(V, d, whole.stored_bytes() + spare, prune=False, kinds=("codebook",),
                                       selections=("first", "counts"))  # frequency-ordered: no map
        assert any(r.layout.exact_rows and (r.layout.groups, r.layout.codes, r.layout.storage) == (8, 16, "float32")
                   for r in recipes) == planned


def test_proxy_error_matches_numpy_for_plain_low_rank():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(VOCAB, DIM))
    recipe = planner.Recipe(TableLayout(VOCAB, DIM, rank=4), "none")
    (ranked,) = planner.rank_recipes([recipe], table, None, np.ones(VOCAB))
    s = np.linalg.svd(table, compute_uv=False)
    assert ranked.proxy_error == pytest.approx(np.sum(s[4:] ** 2) / np.sum(s**2), rel=1e-6)


def test_proxy_errors_after_a_frequency_weighted_recipe_are_those_of_the_table():
    # The weighted recipe first: a fit that changed the ranked table would
    # show in its own proxy and in every recipe ranked after it.
    rng = np.random.default_rng(0)
    table = rng.normal(size=(VOCAB, DIM)) * np.linspace(2.0, 0.2, DIM)
    weights = rng.zipf(1.8, size=VOCAB).astype(float) + 1.0
    recipes = [planner.Recipe(TableLayout(VOCAB, DIM, rank=4), "frequency"),
               planner.Recipe(TableLayout(VOCAB, DIM, rank=4), "none")]
    weighted, plain = sorted(planner.rank_recipes(recipes, table, None, weights), key=lambda r: r.weighting)
    norm = np.sum(weights * np.sum(table**2, axis=1))
    s_weighted = np.linalg.svd(np.sqrt(weights)[:, None] * table, compute_uv=False)
    assert weighted.proxy_error == pytest.approx(np.sum(s_weighted[4:] ** 2) / norm, rel=1e-5)
    u, s, vt = np.linalg.svd(table, full_matrices=False)
    rank4 = (u[:, :4] * s[:4]) @ vt[:4]
    assert plain.proxy_error == pytest.approx(np.sum(weights * np.sum((table - rank4) ** 2, axis=1)) / norm, rel=1e-5)
    # The weighted fit is the optimum of the weighted error the proxy measures.
    assert weighted.proxy_error < plain.proxy_error


@pytest.mark.parametrize("oov_id", [1, 7])
def test_proxy_error_of_pruning_uses_the_oov_row(oov_id):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(VOCAB, DIM))
    kept = np.array(sorted({0, oov_id, 2, 3, 5}))
    recipe = planner.Recipe(TableLayout(VOCAB, DIM, rows=len(kept), remap=True), None, "counts")
    weights = rng.uniform(1, 3, size=VOCAB)
    (ranked,) = planner.rank_recipes([recipe], table, lambda rows, selection: kept, weights, oov_id=oov_id)
    answered = np.where(np.isin(np.arange(VOCAB), kept)[:, None], table, table[oov_id])
    expected = np.sum(weights * np.sum((table - answered) ** 2, axis=1)) / np.sum(weights * np.sum(table**2, axis=1))
    assert ranked.proxy_error == pytest.approx(expected, rel=1e-9)


def test_compress_works_on_a_factorized_pipeline_with_low_rank_layers(task):
    model, train, val = task
    small, report = keras_lowrank.compress(model, train, val, size=0.2, return_report=True,
                                           prune=False, storages=["float32"], kinds=["low-rank"],
                                           **dict(QUICK, epochs=0))
    layer = small.get_layer("embedding")
    assert isinstance(layer, LowRankEmbedding)
    assert report.recipe["embedding"]["family"] == "low-rank"
