"""`keras-lowrank bench export` at a tiny size: files, sizes, merging and re-rendering.

No timing assertions: only that every latency was measured and that the
sizes and the accounting are what the formats imply.
"""

import argparse
import copy
import json

import pytest

from keras_lowrank.benchmarks import export as export_benchmark

TINY = [
    "--models", "dan", "--vocab-sizes", "64", "--embedding-dim", "8",
    "--sequence-length", "6", "--compression", "0.5", "--batch-sizes", "1", "2",
    "--repeats", "2", "--calls", "2", "--variants", "lowrank_folded",
]


def _args(*argv):
    parser = argparse.ArgumentParser()
    export_benchmark.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One tiny measurement (two exports) shared by the tests of this file."""
    output = tmp_path_factory.mktemp("export")
    assert export_benchmark.run(_args(*TINY, "--output", str(output))) == 0
    return output


def test_writes_one_configuration_with_the_reference(measured):
    results = json.loads((measured / "results.json").read_text())
    (run,) = results["runs"]
    assert (run["model"], run["vocab_size"], run["embedding_dim"]) == ("dan", 64, 8)
    # full_float32 is always measured: every ratio refers to it.
    assert [r["variant"] for r in run["rows"]] == ["full_float32", "lowrank_folded"]
    # floor((1 - c) V d / (V + d)), computed independently.
    assert run["rank"] == (64 * 8 // 2) // (64 + 8)
    full, folded = run["rows"]
    assert folded["bytes"] < full["bytes"]
    assert full["size_ratio_vs_full"] == 1.0
    for row in run["rows"]:
        assert row["max_abs_difference"] < 1e-4
        for b in (1, 2):
            assert len(row[f"tflite_b{b}"]["samples_ms"]) == 2
    e = run["embedding_bytes"]
    assert e["full_float32"] == 64 * 8 * 4
    assert e["lowrank_float32"] == 4 * run["rank"] * (64 + 8)
    machine = run["machine"]
    assert len(machine["load_average_before"]) == len(machine["load_average_after"]) == 3
    assert run["command"].startswith("keras-lowrank bench export --models dan --vocab-sizes 64")
    assert run["command"].endswith(f"--output {measured}")
    text = (measured / "results.md").read_text()
    assert "## DAN, V=64, d=8, rank=3" in text
    assert "| low-rank c=0.5, folded |" in text


def test_render_only_does_not_measure(measured, monkeypatch):
    before = (measured / "results.md").read_text()
    (measured / "results.md").unlink()

    def fail(*args, **kwargs):
        raise AssertionError("--render-only must not measure")

    monkeypatch.setattr(export_benchmark, "_one_config", fail)
    assert export_benchmark.run(_args("--output", str(measured), "--render-only")) == 0
    assert (measured / "results.md").read_text() == before


def _fake_measurement(monkeypatch, template):
    """Replaces the measurement by a copy of `template` with the asked configuration."""

    def one_config(model_name, vocab, args):
        run = copy.deepcopy(template)
        run.update(model=model_name, vocab_size=vocab, batch_sizes=list(args.batch_sizes))
        run["rows"][0]["bytes"] = 12345
        return run

    monkeypatch.setattr(export_benchmark, "_one_config", one_config)


def test_merge_keeps_other_configurations(measured, tmp_path, monkeypatch):
    output = tmp_path / "merged"
    output.mkdir()
    (output / "results.json").write_text((measured / "results.json").read_text())
    old = json.loads((measured / "results.json").read_text())["runs"][0]
    _fake_measurement(monkeypatch, old)
    args = _args(*TINY, "--models", "lstm", "--merge", "--output", str(output))
    assert export_benchmark.run(args) == 0
    runs = json.loads((output / "results.json").read_text())["runs"]
    assert [(r["model"], r["vocab_size"]) for r in runs] == [("dan", 64), ("lstm", 64)]
    assert runs[0] == old  # the DAN entry is kept as it was measured
    assert "--merge" in runs[1]["command"]
    # The file replaced by this run is kept.
    (earlier,) = (output / "earlier").iterdir()
    assert json.loads(earlier.read_text())["runs"] == [old]

    # Measuring a configuration again replaces its entry, and only it.
    args = _args(*TINY, "--models", "dan", "--merge", "--output", str(output))
    assert export_benchmark.run(args) == 0
    runs = json.loads((output / "results.json").read_text())["runs"]
    assert [(r["model"], r["rows"][0]["bytes"]) for r in runs] == [("dan", 12345), ("lstm", 12345)]


def test_without_merge_results_are_replaced(measured, tmp_path, monkeypatch):
    output = tmp_path / "replaced"
    output.mkdir()
    (output / "results.json").write_text((measured / "results.json").read_text())
    _fake_measurement(monkeypatch, json.loads((measured / "results.json").read_text())["runs"][0])
    assert export_benchmark.run(_args(*TINY, "--models", "lstm", "--output", str(output))) == 0
    runs = json.loads((output / "results.json").read_text())["runs"]
    assert [r["model"] for r in runs] == ["lstm"]


def test_renders_results_of_the_first_version():
    # The first version kept command, machine and settings once per file.
    legacy = {
        "command": "keras-lowrank bench export --out docs/results/export",
        "machine": {"cpu": "X", "cores_visible": 2},
        "settings": {"batch_sizes": [1], "sequence_length": 40, "compression": 0.9,
                     "repeats": 15, "calls": 20, "seed": 0, "quick": False},
        "runs": [{
            "model": "dan", "vocab_size": 100, "embedding_dim": 4, "rank": 3,
            "embedding_bytes": {"full_float32": 1600, "lowrank_float32": 1248,
                                "lowrank_int8": 400, "smaller_x_float32": 1.28,
                                "smaller_x_int8": 4.0},
            "rows": [],
        }],
    }
    text = export_benchmark.render_markdown(legacy)
    assert "Load average: not recorded." in text
    assert "`keras-lowrank bench export --out docs/results/export` (written before" in text


def test_rejects_bad_compression(tmp_path):
    with pytest.raises(ValueError, match="compression=1.5"):
        export_benchmark.run(_args("--compression", "1.5", "--output", str(tmp_path)))
    assert not (tmp_path / "results.json").exists()
