"""`keras-lowrank compress IN.keras OUT.keras`: factorize embeddings, optionally fine-tune, save.

Wires `keras_lowrank.surgery.factorize_embeddings` (rank from `--compression`,
`--rank` or `--energy`) to a saved model, prints the conversion report and,
with `--fine-tune DATA.npz`, fine-tunes the converted model with a cyclically
annealed learning rate (CALR) before saving it. The conversion and the
schedule live in the library: this command must not reimplement them.
"""

NAME = "compress"
HELP = "Factorize the embedding tables of a .keras model (SVD), optionally fine-tune with CALR, and save."
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
    target.add_argument("--compression", type=float, help="Share of embedding parameters to remove, in (0, 1), e.g. 0.9.")
    target.add_argument("--rank", type=int, help="Rank of the factorization.")
    target.add_argument("--energy", type=float, help="Smallest rank keeping this share of spectral energy, in (0, 1].")
    parser.add_argument("--layers", nargs="+", metavar="NAME", help="Only these embedding layers (default: all).")
    parser.add_argument(
        "--fine-tune", metavar="DATA.npz",
        help="Fine-tune after factorizing on a .npz with arrays x (int ids) and y (labels); "
        "optional x_val, y_val for validation.",
    )
    parser.add_argument("--epochs", type=int, default=None, help="Fine-tune epochs (default 3).")
    parser.add_argument("--batch-size", type=int, default=None, help="Fine-tune batch size (default 64).")
    parser.add_argument("--learning-rate", type=float, default=None, help="CALR floor (default 1e-4).")
    parser.add_argument("--max-learning-rate", type=float, default=None, help="CALR first peak (default 3e-3).")
    parser.add_argument("--decay", type=float, default=None, help="CALR peak decay per cycle (default 0.5).")
    parser.add_argument(
        "--loss", default=None,
        help="Loss for the fine-tune when the model was saved without one "
        "(default: sparse categorical cross-entropy, from logits unless the model ends in softmax).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace OUT.keras if it exists.")
    parser.add_argument(
        "--custom-module", action="append", default=[], metavar="MODULE",
        help="Import this module first (it registers the model's custom objects). Repeatable.",
    )


def _load_fine_tune_data(path):
    import os

    import numpy as np

    from keras_lowrank.cli.errors import CLIError

    if not os.path.exists(path):
        raise CLIError(f"no such file: {path}")
    try:
        data = np.load(path)
    except (OSError, ValueError) as error:
        raise CLIError(f"--fine-tune expects a .npz file with arrays x and y: {path}") from error
    missing = [key for key in ("x", "y") if key not in data.files]
    if missing:
        raise CLIError(f"{path} lacks array(s) {missing}; found {sorted(data.files)}")
    if data["x"].ndim < 2 or not np.issubdtype(data["x"].dtype, np.integer):
        raise CLIError(
            f"{path}: x must be an integer array of token ids (n, sequence_length), "
            f"received shape {data['x'].shape} and dtype {data['x'].dtype}"
        )
    if len(data["x"]) != len(data["y"]) or len(data["x"]) == 0:
        raise CLIError(f"{path}: x and y must be non-empty and of equal length, got {len(data['x'])} and {len(data['y'])}")
    validation = None
    if "x_val" in data.files and "y_val" in data.files:
        validation = (data["x_val"], data["y_val"])
    return data["x"], data["y"], validation


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

    check_output_path(args.output, ".keras", overwrite=args.overwrite)
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
    # Temp file + rename: Ctrl-C while saving over the input must not truncate it.
    from keras_lowrank.utils.atomic_write import save_model

    save_model(compressed, args.output)
    print(f"wrote {args.output}")
    return 0
