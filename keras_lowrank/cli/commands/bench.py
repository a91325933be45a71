"""`keras-lowrank bench`: the benchmarks (svd scaling, TFLite export, training cost).

Each benchmark lives in `keras_lowrank.benchmarks.<module>` and defines
`add_arguments(parser)` and `run(args)`; this command only dispatches to them.
All three share `--output DIR` (default `benchmark_results/<name>`), `--doc
PAGE` and `--render-only` (see `keras_lowrank.benchmarks.output`).
"""

import importlib

NAME = "bench"
HELP = "Run a benchmark: svd (SVD scaling), export (TFLite size/latency), train (fit step cost)."

# Benchmark name -> (module, one-line help).
BENCHMARKS = {
    "svd": ("keras_lowrank.benchmarks.svd", "Time and memory of the truncated SVD versus table size."),
    "export": ("keras_lowrank.benchmarks.export", "TFLite size and latency, full versus low-rank."),
    "train": ("keras_lowrank.benchmarks.training_cost", "fit step time and optimizer memory, full versus low-rank."),
}


def add_arguments(parser):
    subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            sub.set_defaults(_benchmark_run=None, _benchmark_error=str(error))
            continue
        module.add_arguments(sub)
        sub.set_defaults(_benchmark_run=module.run)


def run(args):
    from keras_lowrank.cli.errors import CLIError

    if args._benchmark_run is None:
        raise CLIError(
            f"benchmark {args.benchmark!r} is not available: {args._benchmark_error}"
        )
    return args._benchmark_run(args)
