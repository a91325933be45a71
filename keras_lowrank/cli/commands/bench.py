"""`keras-lowrank bench`: the benchmarks (svd scaling, TFLite export, training cost).

Each benchmark lives in `keras_lowrank.benchmarks.<module>` and defines
`add_arguments(parser)` and `run(args)`; this command only dispatches to them.
All three share `--output DIR` (default `benchmark_results/<name>`), `--doc
PAGE` and `--render-only` (see `keras_lowrank.benchmarks.output`).
"""

import importlib

NAME = "bench"
HELP = "Run a benchmark: svd (SVD scaling), export (TFLite size/latency), train (fit step cost), minilm (a pretrained transformer compressed), export-text (a raw-text classifier to a LiteRT file, run from strings), compress-time (compress() wall time against another checkout)."

# Benchmark name -> (module, one-line help).
BENCHMARKS = {
    "svd": ("keras_lowrank.benchmarks.svd", "Time and memory of the truncated SVD versus table size."),
    "export": ("keras_lowrank.benchmarks.export", "TFLite size and latency, full versus low-rank."),
    "train": ("keras_lowrank.benchmarks.training_cost", "fit step time and optimizer memory, full versus low-rank."),
    "minilm": ("keras_lowrank.benchmarks.minilm", "all-MiniLM-L6-v2 compressed: classifier, encoder, TFLite."),
    "export-text": ("keras_lowrank.benchmarks.export_text",
                    "A raw-text classifier trained, compressed, exported and run from strings."),
    "compress-time": ("keras_lowrank.benchmarks.compress_time",
                      "compress() wall time at its defaults, this checkout against another."),
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
    import os

    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import check_output_folder

    if args._benchmark_run is None:
        raise CLIError(
            f"benchmark {args.benchmark!r} is not available: {args._benchmark_error}"
        )
    output = getattr(args, "output", None)
    if output is not None:
        if output == os.path.join("benchmark_results", args.benchmark):
            # The documented default may create benchmark_results/ itself;
            # an explicit --output follows the rule of every other command
            # (its parent folder must exist).
            if os.path.exists(output) and not os.path.isdir(output):
                raise CLIError(f"--output must be a folder, received a file: {output}")
        else:
            check_output_folder(output, option="--output")
    return args._benchmark_run(args)
