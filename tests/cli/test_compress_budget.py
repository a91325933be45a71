"""`keras-lowrank compress --size/--max-bytes`: compress() from the command line.

The saved model's tables store what the printed report says, within the
budget; the JSON report is written; budget-mode errors are one line, exit 2.
"""

import json
import re

import numpy as np
import pytest

import keras

from keras_lowrank.cli.commands.compress import _parse_bytes
from keras_lowrank.cli.commands.compress import _parse_size
from keras_lowrank.cli.main import main
from keras_lowrank.compression import embedding_bytes

from tests.cli.conftest import DIM, VOCAB


def test_size_budget_saves_the_searched_model_and_its_report(files, capsys, tmp_path):
    out, report = tmp_path / "small.keras", tmp_path / "report.json"
    rc = main(["compress", files["model"], str(out), "--size", "20%", "--train", files["data"],
               "--validation", files["data"], "--epochs", "1", "--candidates", "2", "--checkpoint", "best",
               "--json", str(report)])
    assert rc == 0
    printed = capsys.readouterr().out
    # "candidate 1/2", or "recipe 1/2" since compress() searches in rungs.
    assert re.search(r"\b(candidate|recipe) 1/2\b", printed) and f"wrote {out}" in printed
    saved = json.loads(report.read_text())
    model = keras.saving.load_model(out)
    assert embedding_bytes(model) == saved["embedding_bytes"] <= saved["budget_bytes"]
    assert saved["budget_bytes"] == int(0.2 * 4 * VOCAB * DIM)
    assert f"{saved['embedding_bytes']:,} B" in printed
    # `--checkpoint best`: no finalist's weights are an average.
    assert [c["averaged"] for c in saved["candidates"]] == [0, 0]


def test_whole_model_budget_with_quantized_other_layers(files, capsys, tmp_path):
    out, report = tmp_path / "small.keras", tmp_path / "report.json"
    rc = main(["compress", files["model"], str(out), "--max-model-bytes", "1200", "--other-layers", "int8",
               "--train", files["data"], "--validation", files["data"], "--epochs", "1", "--candidates", "4",
               "--json", str(report)])
    assert rc == 0
    saved = json.loads(report.read_text())
    model = keras.saving.load_model(out)
    assert saved["model_bytes"] <= 1200
    # Both ways of storing the logits layer entered the search; the saved model is the chosen one.
    assert {c["other_layers"] for c in saved["candidates"]} == {None, "int8"}
    assert model.get_layer("logits").quantization_mode == saved["other_layers"]


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--size", "5%"], "need --train and --validation"),
        (["--size", "150%"], "expected a size in (0, 1)"),
        (["--max-bytes", "12 parsecs"], "expected a byte count"),
        (["--size", "0.1", "--train", "{data}", "--validation", "{data}", "--fine-tune", "{data}"], "--fine-tune is for"),
        (["--rank", "2", "--train", "{data}"], "--train is used only with --size/--max-bytes"),
        (["--rank", "2", "--checkpoint", "best"], "--checkpoint is used only with --size/--max-bytes"),
        (["--max-bytes", "10", "--train", "{data}", "--validation", "{data}", "--epochs", "0"], "--epochs must be positive"),
        (["--max-bytes", "10", "--train", "{data}", "--validation", "{data}", "--epochs", "1"], "smallest feasible"),
        (["--max-model-bytes", "10", "--train", "{data}", "--validation", "{data}", "--epochs", "1"],
         "other weights alone store"),
        (["--max-model-bytes", "10", "--size", "5%"], "not allowed with argument"),
        (["--size", "5%", "--train", "{data}", "--validation", "{data}", "--other-layers", "int8"],
         "--other-layers needs --max-model-bytes"),
        (["--max-model-bytes", "2000", "--other-layers", "int2"], "expected comma-separated modes among int8, int4"),
        (["--rank", "2", "--other-layers", "int8"], "--other-layers is used only with"),
    ],
)
def test_budget_mode_errors_are_one_line(files, capsys, tmp_path, extra, fragment):
    extra = [e.format(data=files["data"]) for e in extra]
    try:
        rc = main(["compress", files["model"], str(tmp_path / "o.keras"), *extra])
    except SystemExit as exit_:  # argparse's own errors exit from inside parse_args
        rc = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and fragment in err[0], err


@pytest.mark.parametrize(
    "text, value", [("5%", 0.05), ("0.02", 0.02), (" 12.5% ", 0.125)]
)
def test_parse_size(text, value):
    assert _parse_size(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "text, value", [("200000", 200_000), ("200KB", 200_000), ("1.5MB", 1_500_000), ("64KiB", 65_536), ("10 b", 10)]
)
def test_parse_bytes(text, value):
    assert _parse_bytes(text) == value


def test_checkpoint_choices_are_those_compress_accepts():
    from keras_lowrank.cli.main import build_parser
    from keras_lowrank.compression.options import CHECKPOINTS

    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.choices and "compress" in a.choices]
    (checkpoint,) = [a for a in commands.choices["compress"]._actions if a.dest == "checkpoint"]
    assert sorted(checkpoint.choices) == sorted(CHECKPOINTS)
