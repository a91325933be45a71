"""`keras-lowrank bench train` at a tiny size: every variant measured, memory counted, re-rendered.

No timing assertions: the optimizer memory is checked against an
independent count (Adam keeps two float32 slots per parameter). A `--quick`
run is made on every backend this Python can import: the current one in
this process, any other in a child process (`--backend`).
"""

import argparse
import importlib.util
import json
import pathlib

import keras
import pytest

from keras_lowrank.benchmarks import training_cost

pytestmark = pytest.mark.backend_agnostic

ROOT = pathlib.Path(__file__).resolve().parents[2]

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
    variants = results["variants"]
    r = results["config"]["rank"]
    for name in ("full", "full_lazy"):
        assert variants[name]["embedding_optimizer_state_bytes"] == 2 * 4 * 2000 * 32
    for name in ("factorized", "factorized_lazy"):
        assert variants[name]["embedding_optimizer_state_bytes"] == 2 * 4 * r * (2000 + 32)
    assert {v["timed_steps"] for v in variants.values()} == {4}
    assert set(results["sgd_variants"]) == {"full_sgd", "factorized_sgd"}
    backend = keras.backend.backend()
    assert results["backend"]["name"] == backend
    assert results["backend"]["version"] == results["machine"]["libraries"][backend]
    # The IndexedSlices update cost exists on TensorFlow only.
    assert (results["update_of_full_table_ms"] is None) == (backend != "tensorflow")
    for key in ("full_over_factorized", "full_over_factorized_lazy", "full_lazy_over_factorized_lazy"):
        assert results["ratios"][f"step_time_{key}"] > 0
    machine = results["machine"]
    assert len(machine["load_average_before"]) == len(machine["load_average_after"]) == 3
    assert results["command"].startswith(f"keras-lowrank bench train --backend {backend} ")
    assert results["command"].endswith(f"--steps 2 --repeats 2 --seed 0 --output {measured}")
    page = (measured / "results.md").read_text()
    assert page.startswith("# Training cost benchmark results")
    assert f"Keras backend {backend} (" in page
    assert "LazyAdam / LazyAdam (like for like)" in page


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


@pytest.mark.parametrize("backend", sorted(training_cost.BACKENDS))
def test_quick_run_on_each_installed_backend(backend, tmp_path):
    if importlib.util.find_spec(training_cost.BACKENDS[backend]) is None:
        pytest.skip(f"{backend} is not installed in this Python")
    # `--quick` with fewer, shorter steps than its defaults: the shape of a
    # real run (every variant, the backend's own data path, the rendering)
    # in seconds. A backend other than the current one runs in a child.
    argv = ["--quick", "--vocab-size", "2000", "--batch-size", "16", "--steps", "1", "--repeats", "1"]
    assert training_cost.run(_args(*argv, "--backend", backend, "--output", str(tmp_path))) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["backend"]["name"] == backend
    assert results["config"]["vocab_size"] == 2000
    assert f"--backend {backend} " in results["command"]


def test_missing_backend_is_a_value_error(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    missing = next(b for b in training_cost.BACKENDS if b != keras.backend.backend())
    with pytest.raises(ValueError, match=f"backend='{missing}'"):
        training_cost.run(_args(*TINY, "--backend", missing, "--output", str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_existing_tensorflow_results_still_render(tmp_path):
    # Written before the backend and LazyAdam were measured (kept in
    # earlier/ since): renders as then.
    results = json.loads((ROOT / "docs/results/training_cost/earlier/2026-11-28T1643Z.json").read_text())
    assert "backend" not in results
    text = training_cost.render_markdown(results)
    assert "Targets of issue 5: `fit` step >= 6x faster" in text
    assert "LazyAdam" not in text


def test_child_process_measures_on_the_backend_it_is_given():
    # The route `--backend` takes when Keras is already imported on another
    # backend; here the child gets the current one, the only one surely installed.
    backend = keras.backend.backend()
    config = training_cost._config_from_args(_args(*TINY, "--steps", "1", "--repeats", "1"), backend)
    results = training_cost._measure_in_subprocess(backend, config)
    assert results["backend"]["name"] == backend
    assert results["variants"]["factorized_lazy"]["timed_steps"] == 1
