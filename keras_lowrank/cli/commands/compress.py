"""`keras-lowrank compress IN.keras OUT.keras`: compress embedding tables and save.

Two modes:
- to a byte budget (`--size 5%` or `--max-bytes 200KB`, with `--train` and
  `--validation` data): `keras_lowrank.compress`, which searches pruning x
  rank x storage, fine-tunes with distillation and picks on validation data;
  the `CompressionReport` is printed;
- plain surgery (`--compression`, `--rank` or `--energy`):
  `keras_lowrank.factorize_embeddings`, its conversion report, and with
  `--fine-tune DATA.npz` a fine-tune with a cyclically annealed learning rate.

The recipes, the conversion and the schedule live in the library: this
command must not reimplement them.
"""

NAME = "compress"
HELP = ("Compress the embedding tables of a .keras model to a byte budget (--size/--max-bytes), "
        "or factorize them (--compression/--rank/--energy), and save.")
# Defaults of the budget mode's training options (see `keras_lowrank.compress`).
BUDGET_DEFAULTS = {"epochs": 5, "batch_size": 64}
# Defaults of the options that only apply with --fine-tune (`loss` None: the
# saved loss, else sparse categorical cross-entropy).
FINE_TUNE_DEFAULTS = {
    "epochs": 3, "batch_size": 64, "learning_rate": 1e-4,
    "max_learning_rate": 3e-3, "decay": 0.5, "loss": None,
}


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL.keras", help="A trained Keras 3 model.")
    parser.add_argument("output", metavar="OUT.keras", help="Where to save the compressed model.")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--size", type=_parse_size, metavar="FRACTION",
        help="Byte budget as a share of the tables' float32 bytes: '5%%' or 0.05 (needs --train, --validation).",
    )
    target.add_argument(
        "--max-bytes", type=_parse_bytes, metavar="BYTES",
        help="Byte budget of the tables: 200000, 200KB, 1.5MB, 64KiB (needs --train, --validation).",
    )
    target.add_argument(
        "--max-model-bytes", type=_parse_bytes, metavar="BYTES",
        help="Byte budget of the whole model (every weight it stores); the tables get what the other "
        "weights leave (needs --train, --validation).",
    )
    target.add_argument("--compression", type=float, help="Share of embedding parameters to remove, in (0, 1), e.g. 0.9.")
    target.add_argument("--rank", type=int, help="Rank of the factorization.")
    target.add_argument("--energy", type=float, help="Smallest rank keeping this share of spectral energy, in (0, 1].")
    parser.add_argument("--layers", nargs="+", metavar="NAME", help="Only these embedding layers (default: all).")
    parser.add_argument(
        "--train", metavar="DATA",
        help="Budget mode: training data, a .npz with arrays x and y, or a .csv/.tsv with text and "
        "label columns (integer class ids) for models that take raw text.",
    )
    parser.add_argument("--validation", metavar="DATA", help="Budget mode: validation data (same formats); the only data used to choose.")
    parser.add_argument("--candidates", type=int, default=None, help="Budget mode: recipes entering the search (default 12).")
    # `compression.options.CHECKPOINTS`, spelled out: `--help` must not import Keras
    # (a test keeps the two equal).
    parser.add_argument("--checkpoint", choices=("average", "best"), default=None,
                        help="Budget mode: each finalist's weights: the mean of its last rung's checkpoints "
                             "(average, the default) or its best-scoring checkpoint (best).")
    parser.add_argument("--json", metavar="REPORT.json", default=None, help="Budget mode: also write the report as JSON.")
    parser.add_argument(
        "--other-layers", type=_parse_other_layers, default=None, metavar="MODES",
        help="With --max-model-bytes: Keras quantization modes the layers that are not tables (Dense, "
        "EinsumDense) may take to meet the budget, e.g. int8 or int8,int4; chosen on validation data.",
    )
    parser.add_argument(
        "--fine-tune", metavar="DATA.npz",
        help="Fine-tune after factorizing on a .npz with arrays x (int ids) and y (labels); "
        "optional x_val, y_val for validation.",
    )
    parser.add_argument("--epochs", type=int, default=None, help="Fine-tune epochs (default 3; budget mode 5).")
    parser.add_argument("--batch-size", type=int, default=None, help="Fine-tune batch size (default 64).")
    parser.add_argument("--learning-rate", type=float, default=None, help="CALR floor (default 1e-4).")
    parser.add_argument("--max-learning-rate", type=float, default=None, help="CALR first peak (default 3e-3).")
    parser.add_argument("--decay", type=float, default=None, help="CALR peak decay per cycle (default 0.5).")
    parser.add_argument(
        "--loss", default=None,
        help="Loss for the fine-tune when the model was saved without one "
        "(default: sparse categorical cross-entropy, from logits unless the model ends in softmax).",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="Replace OUT.keras (and --json) if it exists; an input is never replaced.",
    )
    parser.add_argument(
        "--custom-module", action="append", default=[], metavar="MODULE",
        help="Import this module first (it registers the model's custom objects). Repeatable.",
    )


def _load_fine_tune_data(path):
    from keras_lowrank.cli.model_io import load_arrays

    data = load_arrays(path, "--fine-tune", required=("x", "y"), optional=("x_val", "y_val"))
    validation = None
    if "x_val" in data and "y_val" in data:
        validation = (data["x_val"], data["y_val"])
    return data["x"], data["y"], validation


def _parse_size(text):
    import argparse

    value = text.strip()
    try:
        number = float(value[:-1]) / 100.0 if value.endswith("%") else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.05 or 5%, received: {text!r}") from None
    if not 0.0 < number < 1.0:
        raise argparse.ArgumentTypeError(f"expected a size in (0, 1), e.g. 0.05 or 5%, received: {text!r}")
    return number


_BYTE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def _parse_bytes(text):
    import argparse
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if not match or unit not in _BYTE_UNITS:
        raise argparse.ArgumentTypeError(f"expected a byte count such as 200000, 200KB or 1.5MB, received: {text!r}")
    value = int(float(match.group(1)) * _BYTE_UNITS[unit])
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive byte count, received: {text!r}")
    return value


def _parse_other_layers(text):
    import argparse

    from keras_lowrank.compression.other_layers import MODES

    modes = tuple(part.strip() for part in text.split(","))
    if not all(mode in MODES for mode in modes):
        raise argparse.ArgumentTypeError(f"expected comma-separated modes among {', '.join(MODES)}, received: {text!r}")
    return modes


def _load_labelled(path, flag):
    """`(x, y)` from a .npz (x, y) or a .csv/.tsv (text, label with integer class ids)."""
    import numpy as np

    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import check_input_file, integer_labels, load_arrays

    check_input_file(path, flag)
    if path.lower().endswith((".csv", ".tsv")):
        from keras_lowrank.data.text_files import read_table

        texts, labels, lines = read_table(path, return_lines=True)
        y = integer_labels(labels, f"{flag}: {path}", lines=lines)
        # One text per example; shaped and typed for the model's string
        # input once the model is loaded (`_as_model_inputs`).
        return np.asarray(texts, dtype=object), y
    data = load_arrays(path, flag, required=("x", "y"), optional=())
    x, y = data["x"], data["y"]
    if len(x) != len(y) or len(x) == 0:
        raise CLIError(f"{flag}: {path}: x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")
    return x, integer_labels(y, f"{flag}: {path}")


def _run_budget(args):
    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import check_fine_tune_data, check_output_path, load_model, writing

    missing = [flag for flag, value in (("--train", args.train), ("--validation", args.validation)) if value is None]
    if missing:
        raise CLIError(f"--size/--max-bytes need {' and '.join(missing)}")
    if args.fine_tune is not None:
        raise CLIError("--fine-tune is for --compression/--rank/--energy; with --size/--max-bytes pass --train and --validation")
    for flag, value in (("--learning-rate", args.learning_rate), ("--max-learning-rate", args.max_learning_rate),
                        ("--decay", args.decay)):
        if value is not None:
            raise CLIError(f"{flag} is for --fine-tune; --size/--max-bytes use compress()'s schedule")
    if args.json:
        check_output_path(
            args.json, ".json", overwrite=args.overwrite, option="--json",
            inputs=_inputs(args), outputs=[(None, args.output)],
        )
    for dest, default in BUDGET_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    for option in ("epochs", "batch_size", "candidates"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            raise CLIError(f"--{option.replace('_', '-')} must be positive, received: {value}")
    train = _load_labelled(args.train, "--train")
    validation = _load_labelled(args.validation, "--validation")
    model = load_model(args.model, compile=True, custom_modules=args.custom_module)
    # Before any candidate trains: inside fit an out-of-range label or id is
    # only a "Graph execution error" without file, value or range.
    check_fine_tune_data(model, *train, source=f"--train {args.train}")
    check_fine_tune_data(model, *validation, source=f"--validation {args.validation}")
    train = _as_model_inputs(model, *train, source=f"--train {args.train}")
    validation = _as_model_inputs(model, *validation, source=f"--validation {args.validation}")

    import keras

    import keras_lowrank

    options = {"epochs": args.epochs, "batch_size": args.batch_size, "verbose": 1}
    if args.candidates is not None:
        options["candidates"] = args.candidates
    if args.checkpoint is not None:
        options["checkpoint"] = args.checkpoint
    if args.other_layers is not None:
        if args.max_model_bytes is None:
            raise CLIError(f"--other-layers needs --max-model-bytes, received: --other-layers "
                           f"{','.join(args.other_layers)}")
        options["other_layers"] = args.other_layers
    if args.loss is not None or getattr(model, "loss", None) is None:
        options["loss"] = args.loss or keras.losses.SparseCategoricalCrossentropy(from_logits=not _ends_in_softmax(model))
        options["metrics"] = ["accuracy"]
    small, report = keras_lowrank.compress(
        model, train, validation, size=args.size, max_bytes=args.max_bytes, max_model_bytes=args.max_model_bytes,
        layer_names=args.layers, return_report=True, **options,
    )
    print(report)
    from keras_lowrank.utils.atomic_write import save_model, write_json

    with writing(args.output):
        save_model(small, args.output)
    print(f"wrote {args.output}")
    if args.json:
        with writing(args.json, "--json"):
            write_json(args.json, report.to_dict())
        print(f"wrote {args.json}")
    return 0


def _as_model_inputs(model, x, y, source):
    """`(x, y)` with texts for a raw-text model in the form Keras takes them.

    Keras 3 on TensorFlow refuses numpy string arrays in `fit`, `evaluate`
    and `predict` ("Invalid dtype: object" for texts of shape `(n, 1)`,
    e.g. "Invalid dtype: str832" for a `<U` array): texts become a `tf.string`
    tensor of the input's shape (`model_io.model_texts`). Ids pass unchanged.
    """
    import numpy as np

    from keras_lowrank.cli.model_io import model_texts, text_input

    if text_input(model) is not None and np.asarray(x).dtype.kind in "OUS":
        x = model_texts(model, x, source)
    return x, y


def _inputs(args):
    """`(flag, path)` of every file the command reads."""
    return [(None, args.model), ("--train", args.train), ("--validation", args.validation),
            ("--fine-tune", args.fine_tune)]


def _ends_in_softmax(model):
    import keras

    last = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(last, "activation", None)
    return activation is keras.activations.softmax or isinstance(last, keras.layers.Softmax)


def run(args):
    import math
    import sys

    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import check_output_path, embedding_layers, load_model

    check_output_path(args.output, ".keras", overwrite=args.overwrite, inputs=_inputs(args))
    if args.size is not None or args.max_bytes is not None or args.max_model_bytes is not None:
        return _run_budget(args)
    for flag, value in (("--train", args.train), ("--validation", args.validation),
                        ("--candidates", args.candidates), ("--checkpoint", args.checkpoint), ("--json", args.json),
                        ("--other-layers", args.other_layers)):
        if value is not None:
            raise CLIError(f"{flag} is used only with --size/--max-bytes/--max-model-bytes")
    # Flags default to None so that one given without --fine-tune is an error.
    from keras_lowrank.cli.options import resolve_dependent_options

    resolve_dependent_options(args, "fine_tune", FINE_TUNE_DEFAULTS)
    for option in ("epochs", "batch_size"):
        if getattr(args, option) <= 0:
            flag = "--" + option.replace("_", "-")
            raise CLIError(f"{flag} must be positive, received: {getattr(args, option)}")
    fine_tune = _load_fine_tune_data(args.fine_tune) if args.fine_tune else None
    model = load_model(args.model, compile=fine_tune is not None, custom_modules=args.custom_module)

    if not embedding_layers(model):
        raise CLIError(f"{args.model} has no Embedding layer to compress")
    if fine_tune is not None:
        # Before the SVD and fit: inside fit an out-of-range label or id is
        # only a "Graph execution error" without split, value or range.
        from keras_lowrank.cli.model_io import check_fine_tune_data

        check_fine_tune_data(model, *fine_tune, source=args.fine_tune)
        x, y, validation = fine_tune
        x, y = _as_model_inputs(model, x, y, args.fine_tune)
        if validation is not None:
            validation = _as_model_inputs(model, *validation, f"{args.fine_tune} (x_val)")
        fine_tune = x, y, validation

    import keras
    import tensorflow as tf

    from keras_lowrank.schedules import CyclicallyAnnealedLearningRate
    from keras_lowrank.surgery import factorize_embeddings

    compressed, report = factorize_embeddings(
        model,
        rank=args.rank,
        compression=args.compression,
        energy=args.energy,
        layer_names=args.layers,
        return_report=True,
    )
    print(report)

    if fine_tune is not None:
        x, y, validation = fine_tune
        steps_per_epoch = math.ceil(len(x) / args.batch_size)
        total_steps = steps_per_epoch * args.epochs
        # Two cycles per epoch, at least one full cycle over the whole fine-tune.
        step_size = max(1, min(steps_per_epoch // 4, total_steps // 2))
        schedule = CyclicallyAnnealedLearningRate(
            initial_learning_rate=args.learning_rate,
            maximal_learning_rate=args.max_learning_rate,
            step_size=step_size,
            decay=args.decay,
        )
        # An explicit --loss wins over the loss saved with the model.
        loss = args.loss or getattr(model, "loss", None)
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not _ends_in_softmax(model))
        try:
            compressed.compile(
                optimizer=keras.optimizers.Adam(learning_rate=schedule),
                loss=loss,
                metrics=["accuracy"],
            )
            # The live progress bar only helps on a terminal; in a log file
            # one line per epoch reads better.
            compressed.fit(
                x, y, validation_data=validation, epochs=args.epochs,
                batch_size=args.batch_size, verbose=1 if sys.stdout.isatty() else 2,
            )
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
            raise CLIError(f"fine-tune failed: {str(error).strip().splitlines()[0]}") from error
    # Temp file + rename: Ctrl-C while saving over an old output must not truncate it.
    from keras_lowrank.cli.model_io import writing
    from keras_lowrank.utils.atomic_write import save_model

    with writing(args.output):
        save_model(compressed, args.output)
    print(f"wrote {args.output}")
    return 0
