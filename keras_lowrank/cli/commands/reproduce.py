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


# Grid and training flags default to None so that `run` can tell the flags a
# user gave from the defaults: `--quick` keeps the former and replaces only
# the latter with its CI-sized values.
DEFAULTS = {
    "datasets": ("snips", "trec", "sst2", "mr"),
    "models": ("dan",),
    "methods": None,
    "compression": None,  # config.DEFAULT_COMPRESSIONS
    "seeds": (0, 1, 2),
    "vectors": ("glove50",),
    "epochs": 12,
    "learning_rate": 3e-3,
    "finetune_epochs": 5,
    "schedule": ("calr",),
    "batch_size": 64,
    "sequence_length": 64,
    "max_train": None,
    "temperature": 2.0,
    "alpha": 0.5,
}
# Flag name -> ReproduceConfig field, where they differ.
CONFIG_FIELDS = {"compression": "compressions", "schedule": "schedules"}


def add_arguments(parser):
    from keras_lowrank.benchmarks.reproduce.config import DEFAULT_COMPRESSIONS
    from keras_lowrank.benchmarks.reproduce.config import METHODS
    from keras_lowrank.benchmarks.reproduce.config import QUICK_EPOCHS

    grid = parser.add_argument_group("grid")
    grid.add_argument(
        "--datasets",
        type=_csv(str),
        default=None,
        help="Comma-separated datasets: bundled names (snips, trec, sst2, mr), data folders "
        "(train/dev/test CSV or TSV with text,label columns) or tfds names "
        "(default: snips,trec,sst2,mr).",
    )
    grid.add_argument("--models", type=_csv(str), default=None, help="dan, lstm, cnn (default: dan).")
    grid.add_argument(
        "--methods",
        type=_csv(str),
        default=None,
        help="Comma-separated methods (default: all): " + ", ".join(METHODS) + ".",
    )
    grid.add_argument(
        "--compression",
        type=_csv(float),
        default=None,
        help="Compression ratios c: a method's embedding bytes are <= (1-c) of the float32 "
        f"table's (default: {','.join(f'{c:g}' for c in DEFAULT_COMPRESSIONS)}, "
        "i.e. 50%%, 10%%, 5%%, 2%%, 1%% of the bytes).",
    )
    grid.add_argument("--seeds", type=_csv(int), default=None, help="Seeds (default: 0,1,2).")
    grid.add_argument(
        "--vectors",
        type=_csv(str),
        default=None,
        help="Initial tables: glove50 (GloVe 6B 50-d from the [glove] extra), learned300 "
        "(300-d learned from scratch, the paper's rank regime) or a GloVe/word2vec .txt path.",
    )
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=None, help="Task-training epochs (default: 12).")
    train.add_argument(
        "--learning-rate", type=float, default=None, help="Adam rate of the task training (default: 3e-3)."
    )
    train.add_argument(
        "--finetune-epochs", type=int, default=None, help="Fine-tune epochs of every online method (default: 5)."
    )
    train.add_argument(
        "--schedule",
        nargs="+",
        default=None,
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
    train.add_argument("--batch-size", type=int, default=None, help="Batch size (default: 64).")
    train.add_argument("--sequence-length", type=int, default=None, help="Tokens kept per text (default: 64).")
    train.add_argument("--max-train", type=int, default=None, help="Seeded training subsample size (CI).")
    train.add_argument("--temperature", type=float, default=None, help="Distillation temperature (default: 2).")
    train.add_argument("--alpha", type=float, default=None, help="Distillation weight in [0, 1] (default: 0.5).")
    train.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores).")
    out = parser.add_argument_group("output")
    out.add_argument("--output", default="reproduce_results", help="Output folder (default: %(default)s).")
    out.add_argument("--cache", default=None, help="Folder of trained uncompressed models, shared by the parts of a split grid "
        "(default: ~/.cache/keras_lowrank/reproduce).")
    out.add_argument(
        "--quick",
        action="store_true",
        help="CI-sized subset: TREC, DAN, GloVe 50-d, every method at 90%%, one seed, "
        f"a 1,500-example subsample trained for {QUICK_EPOCHS} epochs, 1 fine-tune epoch (about a "
        "minute); a smoke test, not the published results. Grid and training flags "
        "given explicitly (e.g. --datasets) replace the subset's values.",
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

    from keras_lowrank.benchmarks.reproduce.config import DEFAULT_COMPRESSIONS

    given = {
        CONFIG_FIELDS.get(flag, flag): tuple(value) if isinstance(value, list) else value
        for flag in DEFAULTS
        if (value := getattr(args, flag)) is not None
    }
    if args.schedule_study:
        given["schedules"] = SCHEDULE_STUDY
    common = {"cache": args.cache, "threads": args.threads}
    if args.quick:
        # The subset's values, except where a flag was given explicitly.
        return ReproduceConfig.quick(args.output, **common, **given)
    settings = {
        CONFIG_FIELDS.get(flag, flag): tuple(value) if isinstance(value, list) else value
        for flag, value in DEFAULTS.items()
    }
    settings.update(methods=METHODS, compressions=DEFAULT_COMPRESSIONS)
    settings.update(given)
    return ReproduceConfig(output=args.output, **common, **settings)


def run(args):
    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import check_output_folder
    from keras_lowrank.cli.model_io import check_output_path

    check_output_folder(args.output, option="--output")
    if args.doc:
        if not os.path.isfile(args.doc):
            raise CLIError(f"--doc must be an existing Markdown file, received: {args.doc}")
        # --doc names a page to edit in place: replacing it is the point.
        check_output_path(args.doc, overwrite=True, option="--doc")
    if args.merge and not args.render_only:
        raise CLIError("--merge is used only with --render-only")

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
