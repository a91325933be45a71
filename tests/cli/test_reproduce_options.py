"""`keras-lowrank reproduce`: --quick keeps the grid flags given explicitly."""

from keras_lowrank.cli.commands.reproduce import _config
from keras_lowrank.cli.main import build_parser


def _parse(*argv):
    return build_parser().parse_args(["reproduce", *argv])


def test_quick_respects_explicit_grid_flags(tmp_path):
    config = _config(_parse("--quick", "--datasets", "snips,mr", "--seeds", "3", "--epochs", "1",
                            "--output", str(tmp_path)))
    assert config.datasets == ("snips", "mr")
    assert config.seeds == (3,)
    assert config.epochs == 1
    # The rest stays CI-sized.
    assert config.compressions == (0.9,) and config.max_train == 1500


def test_quick_alone_and_full_defaults(tmp_path):
    quick = _config(_parse("--quick", "--output", str(tmp_path)))
    assert quick.datasets == ("trec",) and quick.epochs == 20
    full = _config(_parse("--output", str(tmp_path)))
    assert full.datasets == ("snips", "trec", "sst2", "mr")
    assert full.seeds == (0, 1, 2) and full.epochs == 12 and full.max_train is None


def test_folder_dataset_is_named_by_its_folder(tmp_path):
    import json

    from keras_lowrank.cli.main import main

    data = tmp_path / "deep" / "path" / "my_intents"
    data.mkdir(parents=True)
    rows = ["text,label"] + [f"play song number {i},0" for i in range(30)] + [
        f"weather in town {i},1" for i in range(30)
    ]
    for split in ("train", "test"):
        (data / f"{split}.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    rc = main(["reproduce", "--quick", "--datasets", str(data), "--vectors", "learned300",
               "--methods", "uncompressed", "--output", str(out), "--cache", str(tmp_path / "cache")])
    assert rc == 0
    (record,) = json.loads((out / "results.json").read_text())
    assert record["dataset"] == "my_intents"
    assert record["dataset_path"] == str(data)
    assert str(tmp_path) not in (out / "results.md").read_text()
    assert any(p.name.startswith("frontier_my_intents_") for p in out.iterdir())
    # Resuming finds the record under the folder's name: nothing runs again.
    assert main(["reproduce", "--quick", "--datasets", str(data), "--vectors", "learned300",
                 "--methods", "uncompressed", "--output", str(out), "--cache", str(tmp_path / "cache")]) == 0
    assert len(json.loads((out / "results.json").read_text())) == 1
