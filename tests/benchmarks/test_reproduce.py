"""Guards `keras-lowrank reproduce`: the grid's byte accounting, its files and schema.

No accuracy thresholds and no timing assertions: the claims live in
docs/results. The end-to-end run (`--quick`, about half a minute) is the
real-data smoke test of the whole reproduction in the default suite.
"""

import json
import math

import keras
import numpy as np
import pytest

from keras_lowrank.compression import TableLayout
from keras_lowrank.compression import table_bytes

from keras_lowrank.benchmarks.reproduce import budget as B
from keras_lowrank.benchmarks.reproduce.config import METHODS
from keras_lowrank.benchmarks.reproduce.config import SIZED_METHODS
from keras_lowrank.benchmarks.reproduce.config import ReproduceConfig
from keras_lowrank.benchmarks.reproduce.config import parse_schedule
from keras_lowrank.benchmarks.reproduce.methods import COMPRESS_METHODS
from keras_lowrank.benchmarks.reproduce.methods import plan
from keras_lowrank.benchmarks.reproduce.report import render
from keras_lowrank.benchmarks.reproduce.runner import RECORD_FIELDS
from keras_lowrank.cli.main import main
from keras_lowrank.layers import LowRankEmbedding


def _nbytes(layer):
    # Independent count: the numpy arrays Keras hands back, at their dtype.
    return sum(np.asarray(w).nbytes for w in layer.get_weights())


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_dense_quantized_bytes_match_keras_layer(mode):
    for rows, dim in [(37, 50), (101, 300), (10, 7)]:
        layer = keras.layers.Embedding(rows, dim)
        layer.build()
        layer.quantize(mode)
        assert B.dense_table_bytes(rows, dim, mode) == _nbytes(layer)


@pytest.mark.parametrize("storage", ["float32", "int8", "int4"])
@pytest.mark.parametrize("rank", [1, 4, 7, 30])
def test_low_rank_bytes_match_layer(storage, rank):
    rows, dim = 123, 50
    layer = LowRankEmbedding(rows, dim, rank)
    layer.build()
    if storage != "float32":
        layer.quantize(storage)
    # Three counts agree: the formula, the layer's own, the arrays' bytes.
    assert B.low_rank_bytes(rows, dim, rank, storage) == _nbytes(layer)
    assert table_bytes(layer) == layer.storage_bytes() == _nbytes(layer)
    if storage == "int4":
        expected = rows * math.ceil(rank / 2) + 4 * rows + rank * dim + 4 * dim
    elif storage == "int8":
        expected = rows * rank + 4 * rows + rank * dim + 4 * dim
    else:
        expected = 4 * rank * (rows + dim)
    assert B.low_rank_bytes(rows, dim, rank, storage) == expected


@pytest.mark.parametrize("method", SIZED_METHODS)
@pytest.mark.parametrize("size", [0.5, 0.1, 0.05, 0.02, 0.01])
@pytest.mark.parametrize("shape", [(8000, 50), (8000, 300)])
def test_plans_fit_their_budget(method, size, shape):
    from keras_lowrank.benchmarks.reproduce.methods import COMPRESS_METHODS

    V, d = shape
    p = plan(method, V, d, size)
    assert p.budget_bytes == math.floor(size * 4 * V * d)
    if p.infeasible or method in COMPRESS_METHODS:  # compress() plans for itself
        return
    rows = p.rows or V
    if p.rank is None:
        used = B.dense_table_bytes(rows, d, p.storage)
    else:
        used = B.low_rank_bytes(rows, d, p.rank, p.storage)
        assert p.rank * (rows + d) < rows * d  # the rank saves numbers
        # The largest rank that fits: one more would not (unless capped).
        cap = (rows * d - 1) // (rows + d)
        if p.rows is None and p.rank < cap:
            assert B.low_rank_bytes(rows, d, p.rank + 1, p.storage) > p.budget_bytes
    assert used <= p.budget_bytes


def test_float32_low_rank_matches_rank_for_compression():
    from keras_lowrank.decomposition import rank_for_compression

    for V, d, c in [(8000, 50, 0.9), (8000, 300, 0.95), (12000, 300, 0.99)]:
        p = plan("online", V, d, round(1 - c, 6))
        assert p.rank == rank_for_compression(V, d, c)


def test_stacked_int4_rank_is_larger_at_equal_bytes():
    p32 = plan("online", 8000, 300, 0.05)
    p4 = plan("online+distill+int4", 8000, 300, 0.05)
    assert p4.rank > p32.rank


def test_schedule_specs_parse_and_reject():
    assert parse_schedule("calr:max=0.01,decay=0.5")[1]["decay"] == 0.5
    assert parse_schedule("constant")[1] == {"lr": 1e-3}
    for bad in ["adam", "calr:speed=2", "clr:max=x", "calr:max=-1", ""]:
        with pytest.raises(ValueError):
            parse_schedule(bad)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="method"):
        ReproduceConfig(methods=("online", "magic"))
    with pytest.raises(ValueError, match="compression"):
        ReproduceConfig(compressions=(1.5,))
    with pytest.raises(ValueError, match="model"):
        ReproduceConfig(models=("bert",))
    assert ReproduceConfig(methods=("online",)).methods[0] == "uncompressed"


def _fake_records():
    records = []
    rng = np.random.default_rng(0)
    for seed in range(3):
        for method, size, frac in [
            ("uncompressed", None, 1.0),
            ("int4", None, 0.15),
            ("online", 0.1, 0.08),
            ("online+distill+int4", 0.1, 0.096),
            ("prune+int4", 0.1, 0.1),
            ("online", 0.05, 0.04),
        ]:
            r = {f: None for f in RECORD_FIELDS}
            r.update(
                dataset="trec", model="dan", vectors="glove50", method=method, seed=seed,
                status="ok", target=size is not None, size=size if size else frac,
                compression=1 - (size if size else frac), embedding_fraction=frac,
                embedding_bytes=int(frac * 1000), float32_embedding_bytes=1000,
                dev_accuracy=0.8 + 0.01 * rng.standard_normal(),
                test_accuracy=0.85 - (1 - frac) * 0.02 + 0.005 * rng.standard_normal(),
                schedule_key="calr" if "online" in method else "-",
            )
            records.append(r)
    return records


def test_render_only_from_results_json(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(_fake_records()))
    doc = tmp_path / "doc.md"
    doc.write_text("# Doc\n\ntext before\n")
    rc = main(["reproduce", "--render-only", "--output", str(out), "--doc", str(doc)])
    assert rc == 0
    md = (out / "results.md").read_text()
    assert "online+distill+int4" in md and "Verdicts" in md
    assert (out / "frontier_trec_dan_glove50.png").exists()
    text = doc.read_text()
    assert text.startswith("# Doc") and "BEGIN GENERATED results" in text
    # Re-rendering replaces the block instead of appending a second one.
    render(str(out), doc=str(doc))
    assert doc.read_text().count("BEGIN GENERATED results") == 1


def test_render_only_without_results_is_a_user_error(tmp_path, capsys):
    rc = main(["reproduce", "--render-only", "--output", str(tmp_path / "none")])
    assert rc == 2
    assert "results.json" in capsys.readouterr().err


def test_quick_run_writes_results_with_honest_bytes(tmp_path):
    out = tmp_path / "quick"
    args = ["reproduce", "--quick", "--output", str(out), "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    for name in ("results.json", "results.md", "frontier_trec_dan_glove50.png", "lr_schedules.png"):
        assert (out / name).exists(), name
    records = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in records} == set(METHODS)
    for r in records:
        assert set(RECORD_FIELDS) <= set(r)
        assert r["status"] in ("ok", "infeasible")
        V, d = r["vocab_size"], r["embedding_dim"]
        assert r["float32_embedding_bytes"] == 4 * V * d
        if r["status"] != "ok":
            continue
        assert 0.0 <= r["dev_accuracy"] <= 1.0 and 0.0 <= r["test_accuracy"] <= 1.0
        assert r["embedding_fraction"] == pytest.approx(r["embedding_bytes"] / (4 * V * d), abs=1e-6)
        if r["budget_bytes"] is not None:
            assert r["embedding_bytes"] <= r["budget_bytes"]
            assert r["compression"] == pytest.approx(1 - r["size"])
        rows = r["vocab_rows"] or V
        rank = r["rank"]
        if r["method"] in COMPRESS_METHODS:
            layout = TableLayout.from_dict(r["recipe"]["layout"])
            assert r["embedding_bytes"] == layout.stored_bytes() == r["recipe"]["layout"]["stored_bytes"]
            assert (layout.rows, layout.rank) == (rows, rank)
            if r["method"] in ("codebook", "prune+codebook"):
                assert layout.kind == "codebook"
                assert r["embedding_params"] == layout.params()
            if r["method"] == "codebook":
                assert layout.rows == V
            continue
        expected = {
            "uncompressed": 4 * V * d,
            "uncompressed+finetune": 4 * V * d,
            "float16": 2 * V * d,
            "int8": B.dense_table_bytes(V, d, "int8"),
            "int4": B.dense_table_bytes(V, d, "int4"),
            "prune+int4": B.dense_table_bytes(rows, d, "int4"),
        }.get(r["method"])
        if expected is None:
            storage = "int4" if r["method"].endswith("int4") else "int8" if r["method"].endswith("int8") else "float32"
            expected = B.low_rank_bytes(rows, d, rank, storage)
            assert r["embedding_params"] == rank * (rows + d)
        assert r["embedding_bytes"] == expected, r["method"]
    # Resuming the same grid runs nothing new.
    assert main(args) == 0
    assert len(json.loads((out / "results.json").read_text())) == len(records)
