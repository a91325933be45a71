"""Every subcommand answers a user mistake with one line and exit status 2.

One table of bad invocations (missing file, bad flag value, unknown flag,
output into a folder or a missing folder, unusable --custom-module) run
in-process through `keras_lowrank.cli.main.main`; `--debug` shows the
traceback instead.
"""

import pytest

from keras_lowrank.cli.errors import CLIError
from keras_lowrank.cli.main import main
from tests.cli.conftest import assert_user_error

# Placeholders, filled per test: MODEL (a saved model), DIR (an existing
# folder), MISSING (a folder that does not exist), FILE (an existing file).
CASES = {
    "inspect missing file": ("inspect", "MISSING/m.keras"),
    "inspect bad plot suffix": ("inspect", "MODEL", "--plot", "DIR/spectrum.txt"),
    "inspect unknown flag": ("inspect", "MODEL", "--bogus"),
    "inspect json into folder": ("inspect", "MODEL", "--json", "DIR"),
    "inspect plot in missing folder": ("inspect", "MODEL", "--plot", "MISSING/p.png"),
    "inspect relative custom module": ("inspect", "MODEL", "--custom-module", ".layers"),
    "inspect broken custom module": ("inspect", "MODEL", "--custom-module", "BROKEN"),
    "inspect syntax error module": ("inspect", "MODEL", "--custom-module", "SYNTAX"),
    "compress missing file": ("compress", "MISSING/m.keras", "DIR/o.keras", "--rank", "2"),
    "compress bad value": ("compress", "MODEL", "DIR/o.keras", "--rank", "two"),
    "compress missing target": ("compress", "MODEL", "DIR/o.keras"),
    "compress unknown flag": ("compress", "MODEL", "DIR/o.keras", "--rank", "2", "--bogus"),
    "compress into folder": ("compress", "MODEL", "DIR", "--rank", "2"),
    "compress missing folder": ("compress", "MODEL", "MISSING/o.keras", "--rank", "2"),
    "export missing file": ("export", "MISSING/m.keras", "DIR/o.tflite"),
    "export bad value": ("export", "MODEL", "DIR/o.tflite", "--quantize", "int2"),
    "export unknown flag": ("export", "MODEL", "DIR/o.tflite", "--bogus"),
    "export json into folder": ("export", "MODEL", "DIR/o.tflite", "--json", "DIR"),
    "export missing folder": ("export", "MODEL", "MISSING/o.tflite"),
    "export json missing folder": ("export", "MODEL", "DIR/o.tflite", "--json", "MISSING/r.json"),
    "schedule bad value": ("schedule", "--step-size", "x"),
    "schedule bad steps": ("schedule", "--steps", "-3"),
    "schedule unknown flag": ("schedule", "--bogus"),
    "schedule plot into folder": ("schedule", "--plot", "DIR"),
    "schedule plot missing folder": ("schedule", "--plot", "MISSING/lr.png"),
    "reproduce bad value": ("reproduce", "--seeds", "x"),
    "reproduce unknown flag": ("reproduce", "--bogus"),
    "reproduce output is a file": ("reproduce", "--output", "FILE"),
    "reproduce missing parent": ("reproduce", "--output", "MISSING/out"),
    "reproduce render missing results": ("reproduce", "--render-only", "--output", "DIR"),
    "bench no benchmark": ("bench",),
    "bench bad value": ("bench", "svd", "--seed", "x"),
    "bench unknown flag": ("bench", "svd", "--bogus"),
    "bench missing parent": ("bench", "svd", "--output", "MISSING/out"),
    "bench render missing results": ("bench", "svd", "--render-only", "--output", "DIR"),
}


@pytest.fixture
def places(files, tmp_path, monkeypatch):
    folder = tmp_path / "existing"
    folder.mkdir()
    existing = tmp_path / "a_file.txt"
    existing.write_text("x\n")
    (tmp_path / "user_broken_module.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "user_syntax_module.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return {
        "MODEL": files["model"],
        "DIR": str(folder),
        "MISSING": str(tmp_path / "missing"),
        "FILE": str(existing),
        "BROKEN": "user_broken_module",
        "SYNTAX": "user_syntax_module",
    }


def _argv(case, places):
    argv = []
    for word in CASES[case]:
        for key, value in places.items():
            if word == key or word.startswith(key + "/"):
                word = value + word[len(key):]
        argv.append(word)
    return argv


def _run(argv):
    try:
        return main(argv)
    except SystemExit as exit_info:  # argparse errors exit from parse_args
        return exit_info.code


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_line_and_exit_2(case, places, capsys, tmp_path):
    code = _run(_argv(case, places))
    err = capsys.readouterr().err
    assert_user_error(code, err)
    # Nothing was written next to the inputs, not even a folder.
    assert not (tmp_path / "missing").exists()


def test_debug_shows_the_traceback(places):
    with pytest.raises(CLIError):
        main(["--debug"] + _argv("inspect missing file", places))
    with pytest.raises(CLIError):
        main(["--debug"] + _argv("schedule plot missing folder", places))


def test_help_is_unchanged(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["schedule", "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: keras-lowrank schedule")
