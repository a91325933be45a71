"""The `keras-lowrank` command line: discovers and dispatches subcommands.

Each module in `keras_lowrank.cli.commands` is one subcommand: it defines
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`. Building the
parser imports no Keras, backend or dataset code (the package root defers its
API when started as this command, see `keras_lowrank.load_public_api`), so
`--help` and argument errors answer in a fraction of a second; heavy imports
happen inside `run`. User
errors (`CLIError`, a missing file, a bad argument, argparse's own errors) are
printed as one line `keras-lowrank: error: ...` and exit with status 2;
`--debug` shows the traceback instead. A failure to write a file (a full
disk, a read-only folder) is such a line too, naming the file. Ctrl-C prints
`keras-lowrank: interrupted` and exits with status 130, even when the
interrupt landed where Python would have swallowed it; since every file is
written to a temporary file and renamed into place
(`keras_lowrank.utils.atomic_write`), an interrupted command leaves no partial
file and the old one intact.
"""

import argparse
import contextlib
import importlib
import os
import pkgutil
import re
import sys

import keras_lowrank
from keras_lowrank.cli import commands
from keras_lowrank.cli.errors import CLIError
from keras_lowrank.utils.atomic_write import interrupted
from keras_lowrank.utils.atomic_write import record_interrupts

PROG = "keras-lowrank"


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        yield importlib.import_module(f"{commands.__name__}.{info.name}")


class ArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one line, like every other.

    argparse prints the whole usage block before its message; the command
    line promises one line `keras-lowrank: error: ...` (exit 2) for every user
    error, so the usage is replaced by a pointer to `--help`. Subparsers
    inherit the class, so subcommands (and `bench`'s benchmarks) behave alike.
    `--help` is unchanged.
    """

    def error(self, message):
        message = " ".join(str(message).split())
        where = self.prog[len(PROG):].strip()
        prefix = f"{where}: " if where else ""
        self.exit(2, f"{PROG}: error: {prefix}{message} (see '{self.prog} --help')\n")


def build_parser():
    """Returns the argparse parser with every discovered subcommand."""
    parser = ArgumentParser(
        prog=PROG,
        description=(
            "Compress the word-embedding tables of Keras text models by "
            "low-rank factorization, fine-tune them and export to TFLite."
        ),
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="Show full tracebacks instead of one-line errors.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        sub = subparsers.add_parser(
            module.NAME, help=module.HELP, description=module.HELP
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    """Runs the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _drop_recorded_interrupts(previous_hook)
    try:
        with record_interrupts():
            # The arguments are valid: now import Keras, its backend and
            # every serializable class (skipped at package import for a
            # fast --help).
            _load_public_api_quietly()
            code = int(args._run(args) or 0)
            if interrupted():
                # A Ctrl-C that a `__del__` swallowed: the command went on,
                # but must not report success.
                raise KeyboardInterrupt
            return code
    except (CLIError, OSError, ValueError) as error:
        if args.debug:
            raise
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.unraisablehook = previous_hook


def _one_line(error):
    if isinstance(error, OSError) and error.strerror and error.filename:
        # "[Errno 28] No space left on device: 'x'" reads better as path: reason.
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _drop_recorded_interrupts(hook):
    # A KeyboardInterrupt raised inside a `__del__` is "unraisable": Python
    # prints it with a traceback and goes on. It is recorded (see
    # `record_interrupts`) and ends the command with the one-line message.
    def unraisable(info):
        if not (isinstance(info.exc_value, KeyboardInterrupt) and interrupted()):
            hook(info)

    return unraisable


# Start-up lines of TensorFlow's C++ runtime (absl's "before InitializeLog"
# notice, oneDNN and CPU-feature notes): "I0000 00:00:...", or the older
# "2024-01-01 00:00:00.000000: I tensorflow/...".
_RUNTIME_LOG = re.compile(r"^(?:([IWEF])\d{4} [\d:.]+\s+\d+ |\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) )\S+:\d+\]")
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def _load_public_api_quietly():
    """Imports the public API without TensorFlow's start-up chatter on stderr.

    The chatter would break the one-line error promise. TensorFlow's C++
    runtime honours `TF_CPP_MIN_LOG_LEVEL` (set here only when the user has
    not, so theirs wins) for most messages, but the copies of absl linked
    into its libraries log a few lines at import before anything can
    configure them. So, during the import only, file descriptor 2 goes to a
    temporary file; afterwards every line the level filters is dropped and
    the rest is written to stderr.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        level = 0
    _quiet_python_absl(level)
    if level <= 0 or "tensorflow" in sys.modules:
        keras_lowrank.load_public_api()
        return
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        keras_lowrank.load_public_api()
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            keras_lowrank.load_public_api()
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                if not _filtered(line, level)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _filtered(line, level):
    if line.strip() == _ABSL_NOTICE:
        return True
    match = _RUNTIME_LOG.match(line)
    if not match:
        return False
    return "IWEF".index(match.group(1) or match.group(2)) < level


def _quiet_python_absl(level):
    # TensorFlow's Python side logs through absl-py ("WARNING:absl:...");
    # the same level applies, before TensorFlow configures it.
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    threshold = {1: absl_logging.WARNING, 2: absl_logging.ERROR}.get(level, absl_logging.FATAL)
    if level > 0:
        absl_logging.set_verbosity(threshold)


if __name__ == "__main__":
    sys.exit(main())
