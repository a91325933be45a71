"""The `keras-lowrank` command line: discovers and dispatches subcommands.

Each module in `keras_lowrank.cli.commands` is one subcommand: it defines
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`. Heavy imports
(TensorFlow, datasets) happen inside `run`, so `--help` stays quick. User
errors (`CLIError`, a missing file, a bad argument) are printed as one line and
exit with status 2; `--debug` shows the traceback instead.
"""

import argparse
import importlib
import os
import pkgutil
import sys

from keras_lowrank.cli import commands
from keras_lowrank.cli.errors import CLIError

PROG = "keras-lowrank"


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        yield importlib.import_module(f"{commands.__name__}.{info.name}")


def build_parser():
    """Returns the argparse parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return int(args._run(args) or 0)
    except (CLIError, FileNotFoundError, ValueError) as error:
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
