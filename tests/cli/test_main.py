"""The `keras-lowrank` entry point: help on every command, exit codes, `python -m`."""

import subprocess
import sys

import pytest

from keras_lowrank.cli.main import build_parser, main

COMMANDS = ("inspect", "compress", "export", "schedule", "bench")


def test_every_command_is_discovered():
    choices = build_parser()._subparsers._group_actions[0].choices
    for command in COMMANDS:
        assert command in choices


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: keras-lowrank " + command)


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


def test_python_dash_m_help():
    result = subprocess.run(
        [sys.executable, "-m", "keras_lowrank", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: keras-lowrank" in result.stdout
    for command in COMMANDS:
        assert command in result.stdout
