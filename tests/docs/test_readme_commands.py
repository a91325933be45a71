"""README.md's test command is the one CI runs, and it works as written."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def readme_test_command():
    """Returns the command of the bash block under README's "Run the tests"."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"Run the tests:\s*```bash\n(?P<command>[^\n]+)\n```", text)
    assert match, "README.md has no bash block after 'Run the tests:'"
    return match.group("command").strip()


def test_ci_runs_the_readme_test_command_verbatim():
    command = readme_test_command()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines, f".ci/run does not run README's test command {command!r}"


def test_readme_pytest_collects_without_errors():
    # `pytest` (the console script), not `python -m pytest`: only the latter
    # puts the working folder on sys.path, which hid import errors before.
    command = readme_test_command().split("&&")[-1].split()
    assert command[0] == "pytest"
    executable = shutil.which("pytest", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("pytest")
    assert executable, "the pytest console script is not installed"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [executable, *command[1:], "--collect-only", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "error" not in result.stdout.splitlines()[-1].lower(), result.stdout[-3000:]
