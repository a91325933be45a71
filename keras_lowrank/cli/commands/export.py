"""`keras-lowrank export MODEL.keras OUT.tflite`: a verified TFLite file from a saved model.

Loads the model, calls `keras_lowrank.export.export_tflite` (projection
folding, optional quantization, builtin ops only, parity check against Keras
in the `ai_edge_litert` interpreter) and prints its report. This command only
wires arguments to that function: conversion logic must not live here.
"""

NAME = "export"
HELP = "Export a .keras text model to a verified .tflite file (folding low-rank projections, optional quantization)."

QUANTIZE_CHOICES = ("dynamic", "float16", "int8")


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL.keras", help="A saved Keras 3 model taking integer token ids.")
    parser.add_argument("output", metavar="OUT.tflite", help="Where to write the TFLite file.")
    parser.add_argument(
        "--quantize", choices=QUANTIZE_CHOICES, default=None,
        help="dynamic: int8 weights, float activations; float16: float16 weights; "
        "int8: full integer (needs --representative). Default: float32.",
    )
    parser.add_argument(
        "--no-fold", action="store_true",
        help="Keep the factorized form instead of folding projections B into their consumers.",
    )
    parser.add_argument(
        "--representative", metavar="DATA.npz",
        help="Token ids for int8 calibration: a .npz with an array x (n, sequence_length).",
    )
    parser.add_argument(
        "--sequence-length", type=int, default=None,
        help="Input length, needed when the model's input length is not fixed.",
    )
    parser.add_argument("--json", metavar="PATH", help="Also write the export report as JSON.")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="Replace OUT.tflite (and --json) if it exists; an input is never replaced.",
    )
    parser.add_argument(
        "--custom-module", action="append", default=[], metavar="MODULE",
        help="Import this module first (it registers the model's custom objects). Repeatable.",
    )


def load_ids(path, option="--representative"):
    """Reads the integer id array `x` of a `.npz` file (or its only array)."""
    import numpy as np

    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import load_arrays

    data = load_arrays(path, option)
    if "x" in data:
        ids = data["x"]
    elif len(data) == 1:
        (ids,) = data.values()
    else:
        raise CLIError(f"{option}: {path} has no array x; found {sorted(data)}")
    if ids.ndim != 2 or ids.shape[0] == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise CLIError(
            f"{option}: {path}: x must be a non-empty 2-D integer array (n, sequence_length), "
            f"received shape {ids.shape} and dtype {ids.dtype}"
        )
    return ids.astype("int32")


def _refuse_raw_text(model, path):
    """A one-line error for a model that takes raw text (holds its TextVectorization).

    The export takes models of integer token ids (`export_tflite`): the
    string ops of a `TextVectorization` or `StringLookup` are not builtin
    TFLite ops, and the conversion would fail deep inside TensorFlow.
    """
    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import text_input

    spec = text_input(model)
    if spec is None:
        return
    lookups = [layer.name for layer in _string_layers(model)]
    held = f" through {', '.join(lookups)}" if lookups else ""
    raise CLIError(
        f"{path} takes raw text (a string input{held}); export needs a model that takes integer "
        "token ids: save the layers after the text vectorization as their own model "
        "(keras.Model(ids_input, ...)) and export that"
    )


def _string_layers(model):
    """The `TextVectorization`/`StringLookup` layers of `model` and its sub-models."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.TextVectorization, keras.layers.StringLookup)):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(_string_layers(layer))
    return found


def run(args):
    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import check_output_path, embedding_layers, load_model, writing

    inputs = [(None, args.model), ("--representative", args.representative)]
    check_output_path(args.output, ".tflite", overwrite=args.overwrite, inputs=inputs)
    if args.json:
        check_output_path(
            args.json, overwrite=args.overwrite, option="--json", inputs=inputs,
            outputs=[(None, args.output)],
        )
    if args.quantize == "int8" and not args.representative:
        raise CLIError("--quantize int8 (full integer) needs --representative DATA.npz to calibrate activations")
    if args.representative and args.quantize != "int8":
        raise CLIError("--representative is used only with --quantize int8")
    if args.sequence_length is not None and args.sequence_length <= 0:
        raise CLIError(f"--sequence-length must be positive, received: {args.sequence_length}")
    representative = load_ids(args.representative) if args.representative else None

    model = load_model(args.model, custom_modules=args.custom_module)
    _refuse_raw_text(model, args.model)
    if not embedding_layers(model):
        raise CLIError(f"{args.model} has no Embedding or LowRankEmbedding layer")

    from keras_lowrank.export import export_tflite

    print(f"converting {args.model} (quantize={args.quantize or 'none'}, fold={not args.no_fold}) ...", flush=True)
    with writing(args.output):
        report = export_tflite(
            model,
            args.output,
            quantize=args.quantize,
            fold=not args.no_fold,
            representative_dataset=representative,
            sequence_length=args.sequence_length,
        )
    print(report)
    if args.json:
        from keras_lowrank.utils.atomic_write import write_json

        with writing(args.json, "--json"):
            write_json(args.json, report.to_dict(), indent=2, default=str)
        print(f"wrote {args.json}")
    return 0
