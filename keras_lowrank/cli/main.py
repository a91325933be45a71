"""The `keras-lowrank` command line: discovers and dispatches subcommands.

Each module in `keras_lowrank.cli.commands` is one subcommand: it defines
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`. Building the
parser imports no Keras, backend or dataset code (the package root defers its
API when started as this command, see `keras_lowrank.load_public_api`), so
`--help` and argument errors answer in a fraction of a second; heavy imports
happen inside `run`. User
errors (`CLIError`, a missing file, a bad argument, argparse's own errors) are
printed as one line `keras-lowrank: error: ...` and exit with status 2;
`--debug` shows the traceback instead. Ctrl-C prints `keras-lowrank:
interrupted` and exits with status 130; since every file is written to a
temporary file and renamed into place (`keras_lowrank.utils.atomic_write`), an
interrupted command leaves no partial file and the old one intact.
"""

import argparse
import importlib
import os
import pkgutil
import sys

import keras_lowrank
from keras_lowrank.cli import commands
from keras_lowrank.cli.errors import CLIError

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
    # Set before anything imports TensorFlow: its start-up chatter on stderr
    # would break the one-line error promise.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        # The arguments are valid: now import Keras, its backend and every
        # serializable class (skipped at package import for a fast --help).
        keras_lowrank.load_public_api()
        return int(args._run(args) or 0)
    except (
        CLIError, FileNotFoundError, PermissionError, IsADirectoryError,
        NotADirectoryError, ValueError,
    ) as error:
        if args.debug:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
