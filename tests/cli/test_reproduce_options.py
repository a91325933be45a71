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
    assert quick.datasets == ("trec",) and quick.epochs == 2
    full = _config(_parse("--output", str(tmp_path)))
    assert full.datasets == ("snips", "trec", "sst2", "mr")
    assert full.seeds == (0, 1, 2) and full.epochs == 12 and full.max_train is None
