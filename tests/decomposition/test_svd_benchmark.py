"""The SVD benchmark runs end to end and writes its JSON, Markdown and plot."""

import argparse
import json

from keras_lowrank.benchmarks import svd as svd_benchmark


def test_benchmark_writes_results(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    svd_benchmark.add_arguments(parser)
    args = parser.parse_args(
        ["--sizes", "400,800", "--dim", "20", "--rank", "3", "--repeats", "2",
         "--reference-max-rows", "400", "--output", str(tmp_path)]
    )
    assert svd_benchmark.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["rows"]
    assert {r["method"] for r in rows} == set(svd_benchmark.METHODS)
    skipped = [r for r in rows if "skipped" in r]
    expected = {(800, "numpy"), (800, "scipy_gesdd")}
    assert {(r["V"], r["method"]) for r in skipped} == expected
    exact = [r for r in rows if "seconds" in r and r["method"] != "randomized"]
    # All exact methods reach the same (optimal) error on the same table.
    for size in (400, 800):
        errors = [r["relative_error"] for r in exact if r["V"] == size]
        assert max(errors) - min(errors) < 1e-5
    assert "skipped (V > 400)" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "svd_time.png").stat().st_size > 0
