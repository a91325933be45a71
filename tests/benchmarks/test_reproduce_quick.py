"""`keras-lowrank reproduce --quick` and its report: a real baseline, said to be a subset, tables intact."""

import io
import re

import pytest

from keras_lowrank.benchmarks import markdown
from keras_lowrank.benchmarks.reproduce.config import ReproduceConfig
from keras_lowrank.benchmarks.reproduce.records import RECORD_FIELDS
from keras_lowrank.benchmarks.reproduce.report import render
from keras_lowrank.benchmarks.reproduce.runner import print_summary
from keras_lowrank.cli.commands.reproduce import _config
from keras_lowrank.cli.main import build_parser

LONG_METHOD = "prune+online+freq+distill+int4"


def _records(*, dataset="trec", vectors="glove50", max_train=None, seeds=(0, 1)):
    records = []
    for seed in seeds:
        for method, size, fraction, test in [
            ("uncompressed", None, 1.0, 0.80),
            ("int8", None, 0.27, 0.80),
            ("online", 0.1, 0.08, 0.78),
            (LONG_METHOD, 0.1, 0.1, 0.79),
            ("prune+int4", 0.1, 0.1, 0.77),
        ]:
            r = {field: None for field in RECORD_FIELDS}
            r.update(
                dataset=dataset, model="dan", vectors=vectors, method=method, seed=seed, status="ok",
                target=size is not None, size=size or fraction, compression=1 - (size or fraction),
                embedding_fraction=fraction, embedding_bytes=int(fraction * 1000),
                float32_embedding_bytes=1000, dev_accuracy=test - 0.01, test_accuracy=test + 0.001 * seed,
                schedule_key="calr" if "online" in method else "-", max_train=max_train,
                train_examples=max_train or 4906, base_epochs=20 if max_train else 12,
            )
            records.append(r)
    return records


def _cells(line):
    # Cells of a Markdown table row: split on the pipes that are not escaped.
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def _tables(text):
    """Every Markdown table of `text` as a list of rows (lists of cells)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(_cells(line))
        elif current:
            tables.append(current)
            current = []
    return tables


def test_quick_baseline_trains_at_least_as_long_as_the_full_grid(tmp_path):
    quick = ReproduceConfig.quick(str(tmp_path))
    full = ReproduceConfig()
    # The subsample has fewer steps per epoch: its baseline gets at least the
    # full grid's epochs (the best dev epoch is kept), far more than the
    # fine-tune the compressed models get on top of it.
    assert quick.epochs >= full.epochs
    assert quick.epochs > 5 * quick.finetune_epochs
    from_cli = _config(build_parser().parse_args(["reproduce", "--quick", "--output", str(tmp_path)]))
    assert from_cli.epochs == quick.epochs and from_cli.max_train == quick.max_train


def test_quick_report_says_it_is_a_subset(tmp_path):
    quick, full = tmp_path / "quick", tmp_path / "full"
    render(str(quick), _records(max_train=1500, seeds=(0,)), plots=False)
    render(str(full), _records(), plots=False)
    text = (quick / "results.md").read_text()
    head = text.split("## ", 1)[0]
    assert "quick subset" in head.lower() and "1,500 training examples" in head and "one seed" in head
    assert "quick subset" not in (full / "results.md").read_text().lower()

    out = io.StringIO()
    print_summary(_records(max_train=1500, seeds=(0,)), out=out)
    assert "quick subset" in out.getvalue().lower()
    out = io.StringIO()
    print_summary(_records(), out=out)
    assert "quick subset" not in out.getvalue().lower()


@pytest.mark.parametrize("dataset, vectors", [("trec", "glove50"), ("my|intents", "/data/vectors|v2.txt")])
def test_every_table_row_has_the_header_cells(tmp_path, dataset, vectors):
    records = _records(dataset=dataset, vectors=vectors)
    render(str(tmp_path), records, plots=False)
    text = (tmp_path / "results.md").read_text()
    tables = _tables(text)
    assert len(tables) >= 3
    for table in tables:
        widths = {len(row) for row in table}
        assert widths == {len(table[0])}, table
    # The names with a pipe are shown whole, escaped.
    if "|" in dataset:
        assert "my\\|intents" in text


def test_markdown_rows_escape_pipes_and_empty_cells():
    assert markdown.row(["a|b", None, 1.5, "two\nlines"]) == "| a\\|b |  | 1.5 | two lines |"
    lines = markdown.table(["x", "y"], [["1", None]])
    assert [len(_cells(line)) for line in lines] == [2, 2, 2]
    with pytest.raises(ValueError, match="Expected 2 cells"):
        markdown.table(["x", "y"], [["1"]])


def test_console_summary_columns_stay_aligned():
    out = io.StringIO()
    records = _records(vectors="/data/glove.6B.50d.txt")
    print_summary(records, out=out)
    header, rule, *rows = out.getvalue().rstrip("\n").splitlines()
    assert set(rule) == {"-"}
    size_end = header.index("size") + len("size")
    methods = {r["method"] for r in records}
    assert LONG_METHOD in "".join(rows)
    for row in rows:
        # Every row's method starts under the header's, and its size ends
        # where the header's "size" ends, whatever the method's length.
        assert row[header.index("method"):].split()[0] in methods, row
        assert row[size_end - 1] != " " and row[size_end] == " ", row
