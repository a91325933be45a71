"""`keras-lowrank bench train` at a tiny size: both variants measured, memory counted, re-rendered.

No timing assertions: the optimizer memory is checked against an
independent count (Adam keeps two float32 slots per parameter).
"""

import argparse
import json

import pytest

from keras_lowrank.benchmarks import training_cost

TINY = [
    "--vocab-size", "2000", "--embedding-dim", "32", "--batch-size", "16",
    "--sequence-length", "8", "--steps", "2", "--repeats", "2",
]


def _args(*argv):
    parser = argparse.ArgumentParser()
    training_cost.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    output = tmp_path_factory.mktemp("training_cost")
    assert training_cost.run(_args(*TINY, "--output", str(output))) == 0
    return output


def test_writes_results_with_both_variants(measured):
    results = json.loads((measured / "results.json").read_text())
    full, fact = results["variants"]["full"], results["variants"]["factorized"]
    assert full["embedding_optimizer_state_bytes"] == 2 * 4 * 2000 * 32
    r = results["config"]["rank"]
    assert fact["embedding_optimizer_state_bytes"] == 2 * 4 * r * (2000 + 32)
    assert full["timed_steps"] == fact["timed_steps"] == 4
    machine = results["machine"]
    assert len(machine["load_average_before"]) == len(machine["load_average_after"]) == 3
    assert results["command"].endswith(f"--steps 2 --repeats 2 --seed 0 --output {measured}")
    assert (measured / "results.md").read_text().startswith("# Training cost benchmark results")


def test_render_only_does_not_measure(measured, monkeypatch):
    before = (measured / "results.md").read_text()
    (measured / "results.md").unlink()

    def fail(**config):
        raise AssertionError("--render-only must not measure")

    monkeypatch.setattr(training_cost, "measure", fail)
    assert training_cost.run(_args("--output", str(measured), "--render-only")) == 0
    assert (measured / "results.md").read_text() == before


def test_rejects_bad_compression(tmp_path):
    with pytest.raises(ValueError, match="compression=1.5"):
        training_cost.run(_args(*TINY, "--compression", "1.5", "--output", str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()
