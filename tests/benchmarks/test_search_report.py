"""The search report: compress() against its control, per seed, as a table and a picture."""

import json
import os

import pytest

from keras_lowrank.benchmarks.reproduce import search_report


def _part(root, name, records):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(records, f)
    return folder


def _record(method, seed, accuracy, size=None):
    return {"dataset": "trec", "model": "dan", "method": method, "seed": seed, "size": size,
            "test_accuracy": accuracy, "dev_accuracy": accuracy}


@pytest.fixture
def parts(tmp_path):
    records = []
    # Seed 0: control +1 point over the base, compress at 5% +3 -> compress − control +2.
    # Seed 1: control -1, compress at 5% -2 -> -1. Mean +0.5.
    for seed, base, control, ours in ((0, 0.80, 0.81, 0.83), (1, 0.90, 0.89, 0.88)):
        records += [_record("uncompressed", seed, base), _record("uncompressed+finetune", seed, control),
                    _record("compress", seed, ours, 0.05)]
    return [_part(tmp_path, "p", records)]


def test_compress_is_compared_with_the_control_of_its_own_seed(parts):
    _, by_seed, _, _, seeds, _ = search_report._measured(parts, ())
    assert search_report.versus_control(by_seed, "trec/dan", 0.05, seeds) == pytest.approx([2.0, -1.0])
    text = "\n".join(search_report.render(parts))
    assert "| 5% | trec/dan | +0.00 | +0.50 | +0.50 | +2.0 / -1.0 |" in text


def test_the_plot_is_written(parts, tmp_path):
    pytest.importorskip("matplotlib")
    path = str(tmp_path / "search.png")
    assert search_report.plot(parts, (), path) == path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_chosen_kinds_name_exact_rows_and_pruning(tmp_path):
    def chosen(seed, **layout):
        record = _record("compress", seed, 0.8, 0.05)
        record["recipe"] = {"layout": {"input_dim": 100, "rows": 100, "kind": "codebook", **layout}}
        return record

    records = [_record("uncompressed", s, 0.8) for s in (0, 1, 2)] + [
        chosen(0, exact_rows=40), chosen(1, exact_rows=20), chosen(2, rows=60)]
    text = "\n".join(search_report.render([_part(tmp_path, "p", records)]))
    assert "- 5%: codebook + exact rows ×2, pruned codebook ×1" in text


def test_a_size_run_on_fewer_seeds_is_compared_with_the_control_of_those_seeds(tmp_path):
    # The control ran seeds 0-2, compress() at 5% seeds 0-1 only. Seed 2's
    # control (+5 points) must not enter the 5% row: per seed compress − control
    # is +1 and -1 (mean 0.00), and the control's Δ over seeds 0-1 is +0.50.
    records = []
    for seed, control in ((0, 0.81), (1, 0.80), (2, 0.85)):
        records += [_record("uncompressed", seed, 0.80), _record("uncompressed+finetune", seed, control)]
    records += [_record("compress", 0, 0.82, 0.05), _record("compress", 1, 0.79, 0.05)]
    text = "\n".join(search_report.render([_part(tmp_path, "p", records)]))
    assert "| 5% | trec/dan | +0.50 | +0.50 | +0.00 | +1.0 / -1.0 |" in text


def test_a_control_part_and_an_earlier_compress_are_paired_by_seed(tmp_path):
    # The control and the earlier compress() ran in one part, the new compress() in
    # another with its own uncompressed rows (the same base: 0.80 and 0.90).
    # compress − control: +1 and +2 (mean +1.50); compress − earlier: +2 and -1 (+0.50).
    earlier = [_record("uncompressed", 0, 0.80), _record("uncompressed", 1, 0.90),
               _record("uncompressed+finetune", 0, 0.81), _record("uncompressed+finetune", 1, 0.88),
               _record("compress", 0, 0.80, 0.05), _record("compress", 1, 0.91, 0.05)]
    later = [_record("uncompressed", 0, 0.80), _record("uncompressed", 1, 0.90),
             _record("compress", 0, 0.82, 0.05), _record("compress", 1, 0.90, 0.05)]
    old = _part(tmp_path, "old", earlier)
    text = "\n".join(search_report.render([_part(tmp_path, "new", later)], [old], "the old one", [old]))
    assert "| 5% | trec/dan | -0.50 | +0.50 | +1.00 | +1.50 | +1.0 / +2.0 | +0.50 |" in text
    assert "`compress (earlier)` is the old one" in text


def test_the_earlier_method_picks_another_compress_variant_of_a_part(tmp_path):
    # The other part ran compress() as well as the variant; only the variant's
    # rows are the earlier compress(): compress − earlier is 0.82 − 0.84 and
    # 0.90 − 0.89 (mean -0.50), where its compress rows would give +2.00.
    landed = [_record("uncompressed", 0, 0.80), _record("uncompressed", 1, 0.90),
              _record("compress", 0, 0.82, 0.05), _record("compress", 1, 0.90, 0.05)]
    variant = [_record("uncompressed", 0, 0.80), _record("uncompressed", 1, 0.90),
               _record("compress", 0, 0.80, 0.05), _record("compress", 1, 0.88, 0.05),
               _record("compress+loss", 0, 0.84, 0.05), _record("compress+loss", 1, 0.89, 0.05)]
    new, other = _part(tmp_path, "landed", landed), _part(tmp_path, "variant", variant)
    text = "\n".join(search_report.render([new], [other], "the variant", earlier_method="compress+loss"))
    assert "| 5% | trec/dan | n/a | +1.50 | +1.00 | n/a | n/a | -0.50 |" in text
    assert search_report.main(["--parts", new, "--earlier", other, "--earlier-method", "compress+loss"]) == 0
