"""The frontier report: compress() beside the fixed recipes on one accuracy-vs-bytes axis."""

import json
import os

import numpy as np
import pytest

from keras_lowrank.benchmarks.reproduce import frontier_report
from keras_lowrank.benchmarks.reproduce.report import BEGIN_MARK
from keras_lowrank.benchmarks.reproduce.report import END_MARK


def _part(root, name, records):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(records, f)
    return folder


def _record(method, seed, accuracy, size=1.0, fraction=None):
    return {"dataset": "trec", "model": "dan", "vectors": "glove50", "method": method, "seed": seed,
            "size": size, "target": size < 1.0, "test_accuracy": accuracy, "dev_accuracy": accuracy,
            "embedding_fraction": size if fraction is None else fraction}


@pytest.fixture
def parts(tmp_path):
    grid = [_record("uncompressed", s, 0.80 + s / 100) for s in (0, 1, 2)]
    grid += [_record("prune+int4", s, a, 0.05) for s, a in ((0, 0.70), (1, 0.72), (2, 0.90))]
    searched = [_record("uncompressed", s, 0.80 + s / 100) for s in (0, 1, 2)]
    searched += [_record("compress", s, a, 0.05, 0.0499) for s, a in ((0, 0.79), (1, 0.83), (2, 0.99))]
    # Another compress() variant's part with its control: only the control may enter.
    control = [_record("uncompressed", s, 0.80 + s / 100) for s in (0, 1, 2)]
    control += [_record("uncompressed+finetune", s, 0.81 + s / 100) for s in (0, 1, 2)]
    control += [_record("compress", s, 0.50, 0.05) for s in (0, 1, 2)]
    return (_part(tmp_path, "grid", grid), _part(tmp_path, "searched", searched),
            _part(tmp_path, "control", control))


def test_means_are_over_the_seeds_asked_for(parts):
    grid, searched, control = parts
    rows = frontier_report.frontier_rows([grid, searched], seeds=[0, 1], control=[control])
    by_method = {r["method"]: r for r in rows}
    assert by_method["compress"]["test_mean"] == pytest.approx(np.mean([0.79, 0.83]))
    assert by_method["prune+int4"]["test_mean"] == pytest.approx(np.mean([0.70, 0.72]))
    assert by_method["uncompressed+finetune"]["test_mean"] == pytest.approx(np.mean([0.81, 0.82]))
    assert by_method["compress"]["fraction"] == pytest.approx(0.0499)
    assert by_method["compress"]["n"] == 2


def test_a_control_part_gives_only_its_control(parts):
    grid, searched, control = parts
    rows = frontier_report.frontier_rows([grid, searched], control=[control])
    (compress,) = [r for r in rows if r["method"] == "compress"]
    assert compress["test_mean"] == pytest.approx(np.mean([0.79, 0.83, 0.99]))


def test_two_parts_with_different_results_for_one_run_are_refused(parts, tmp_path):
    grid, searched, _ = parts
    other = _part(tmp_path, "other_base", [_record("uncompressed", 0, 0.75)])
    with pytest.raises(ValueError, match="'grid' and 'other_base' hold different results for uncompressed"):
        frontier_report.frontier_rows([grid, searched, other])


def test_the_block_and_the_pictures_are_written(parts, tmp_path):
    pytest.importorskip("matplotlib")
    grid, searched, control = parts
    doc = tmp_path / "page.md"
    doc.write_text("before\n" + BEGIN_MARK.format(name="frontier") + "\nold\n" + END_MARK.format(name="frontier")
                   + "\nafter\n")
    plots = tmp_path / "plots"
    frontier_report.main(["--parts", grid, searched, "--control", control, "--seeds", "0,1", "--plots",
                          str(plots), "--doc", str(doc)])
    text = doc.read_text()
    assert "old" not in text and text.startswith("before\n") and text.endswith("after\n")
    assert "| `prune+int4` |  | 71.00 |" in text
    assert "| `compress` |  | 81.00 |" in text
    assert "| `uncompressed+finetune` | 81.50 |  |" in text
    picture = plots / "frontier_trec_dan_glove50.png"
    assert "](plots/frontier_trec_dan_glove50.png)" in text
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
