"""`keras-lowrank reproduce`: the paper's experiment on real data, re-runnable.

Parses the grid (datasets, models, methods, compression ratios, seeds,
vectors, epochs, fine-tune schedules, output folder), runs it with
`keras_lowrank.benchmarks.reproduce` and renders the report; `--render-only`
re-renders from an existing results.json. Heavy imports happen in `run`.
"""

import os

NAME = "reproduce"
HELP = (
    "Reproduce online embedding compression on real data: accuracy vs embedding "
    "bytes for low rank, quantization and pruning; writes results.json, results.md and plots."
)


def _csv(kind):
    def parse(text):
        items = [t.strip() for t in str(text).split(",") if t.strip()]
        if not items:
            raise ValueError(f"expected a comma-separated list, received: {text!r}")
        return tuple(kind(t) for t in items)

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def add_arguments(parser):
    from keras_lowrank.benchmarks.reproduce.config import DEFAULT_COMPRESSIONS
    from keras_lowrank.benchmarks.reproduce.config import METHODS

    grid = parser.add_argument_group("grid")
    grid.add_argument(
        "--datasets",
        type=_csv(str),
        default=("snips", "trec", "sst2", "mr"),
        help="Comma-separated datasets: bundled names (snips, trec, sst2, mr), data folders "
        "(train/dev/test CSV or TSV with text,label columns) or tfds names (default: %(default)s).",
    )
    grid.add_argument("--models", type=_csv(str), default=("dan",), help="dan, lstm, cnn (default: dan).")
    grid.add_argument(
        "--methods",
        type=_csv(str),
        default=None,
        help="Comma-separated methods (default: all): " + ", ".join(METHODS) + ".",
    )
    grid.add_argument(
        "--compression",
        type=_csv(float),
        default=DEFAULT_COMPRESSIONS,
        help="Compression ratios c: a method's embedding bytes are <= (1-c) of the float32 "
        "table's (default: %(default)s, i.e. 50%%, 10%%, 5%%, 2%%, 1%% of the bytes).",
    )
    grid.add_argument("--seeds", type=_csv(int), default=(0, 1, 2), help="Seeds (default: 0,1,2).")
    grid.add_argument(
        "--vectors",
        type=_csv(str),
        default=("glove50",),
        help="Initial tables: glove50 (GloVe 6B 50-d from the [glove] extra), learned300 "
        "(300-d learned from scratch, the paper's rank regime) or a GloVe/word2vec .txt path.",
    )
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=12, help="Task-training epochs (default: 12).")
    train.add_argument(
        "--learning-rate", type=float, default=3e-3, help="Adam rate of the task training (default: 3e-3)."
    )
    train.add_argument(
        "--finetune-epochs", type=int, default=5, help="Fine-tune epochs of every online method (default: 5)."
    )
    train.add_argument(
        "--schedule",
        nargs="+",
        default=["calr"],
        metavar="SPEC",
        help="Fine-tune schedules, space-separated specs family[:key=value,...] with family in "
        "calr, clr, constant, cosine-restarts (e.g. 'calr:max=0.01,decay=0.5'; default: calr).",
    )
    train.add_argument(
        "--schedule-study",
        action="store_true",
        help="Run the schedule study: a CALR grid and CLR / constant / cosine-restarts settings "
        "on the fine-tuned methods (overrides --schedule).",
    )
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--sequence-length", type=int, default=64, help="Tokens kept per text (default: 64).")
    train.add_argument("--max-train", type=int, default=None, help="Seeded training subsample size (CI).")
    train.add_argument("--temperature", type=float, default=2.0, help="Distillation temperature (default: 2).")
    train.add_argument("--alpha", type=float, default=0.5, help="Distillation weight in [0, 1] (default: 0.5).")
    train.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores).")
    out = parser.add_argument_group("output")
    out.add_argument("--output", default="reproduce_results", help="Output folder (default: %(default)s).")
    out.add_argument("--cache", default=None, help="Folder of trained uncompressed models, shared by the parts of a split grid "
        "(default: ~/.cache/keras_lowrank/reproduce).")
    out.add_argument(
        "--quick",
        action="store_true",
        help="CI-sized subset: TREC, DAN, GloVe 50-d, every method at 90%%, one seed, "
        "a 1,500-example subsample (about a minute).",
    )
    out.add_argument(
        "--render-only",
        action="store_true",
        help="Do not train: re-render results.md and the plots from OUTPUT/results.json.",
    )
    out.add_argument(
        "--merge",
        action="append",
        default=[],
        metavar="DIR",
        help="With --render-only: also read DIR/results.json (repeatable); OUTPUT gets the merged report.",
    )
    out.add_argument("--doc", default=None, help="Also refresh the generated block of this markdown file.")
    out.add_argument("--doc-block", default="results", help="Name of that block (default: results).")
    out.add_argument("--no-plots", action="store_true", help="Skip the PNG plots.")
    out.add_argument("--fail-fast", action="store_true", help="Stop at the first failed run (default: record it).")


def _config(args):
    from keras_lowrank.benchmarks.reproduce.config import METHODS
    from keras_lowrank.benchmarks.reproduce.config import SCHEDULE_STUDY
    from keras_lowrank.benchmarks.reproduce.config import ReproduceConfig

    schedules = SCHEDULE_STUDY if args.schedule_study else tuple(args.schedule)
    if args.quick:
        overrides = {"cache": args.cache, "threads": args.threads}
        if args.methods:
            overrides["methods"] = args.methods
        return ReproduceConfig.quick(args.output, **overrides)
    return ReproduceConfig(
        datasets=args.datasets,
        models=args.models,
        methods=args.methods or METHODS,
        compressions=args.compression,
        seeds=args.seeds,
        vectors=args.vectors,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        finetune_epochs=args.finetune_epochs,
        schedules=schedules,
        output=args.output,
        cache=args.cache,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        max_train=args.max_train,
        temperature=args.temperature,
        alpha=args.alpha,
        threads=args.threads,
    )


def run(args):
    from keras_lowrank.cli.errors import CLIError

    if args.render_only:
        from keras_lowrank.benchmarks.reproduce.report import render
        from keras_lowrank.benchmarks.reproduce.runner import RESULTS_FILE
        from keras_lowrank.benchmarks.reproduce.runner import load_records

        records = []
        for folder in [args.output] + list(args.merge):
            path = os.path.join(folder, RESULTS_FILE)
            if os.path.exists(path):
                records += load_records(path)
            elif folder != args.output or not args.merge:
                raise CLIError(f"no {RESULTS_FILE} in {folder!r}: run the grid first")
        paths = render(args.output, records, doc=args.doc, doc_block=args.doc_block, plots=not args.no_plots)
        print(f"wrote {paths['results_md']} and {len(paths['plots'])} plot(s) from {len(records)} records")
        return 0

    config = _config(args)
    from keras_lowrank.benchmarks.reproduce.report import render
    from keras_lowrank.benchmarks.reproduce.runner import print_summary
    from keras_lowrank.benchmarks.reproduce.runner import run_grid

    config.fail_fast = bool(args.fail_fast)
    records = run_grid(config)
    print_summary(records)
    paths = render(config.output, records, doc=args.doc, doc_block=args.doc_block, plots=not args.no_plots)
    print(f"wrote {os.path.join(config.output, 'results.json')}, {paths['results_md']} and {len(paths['plots'])} plot(s)")
    failed = [r for r in records if r.get("status") == "error"]
    if failed:
        print(f"{len(failed)} run(s) failed; see results.md", flush=True)
    return 0
