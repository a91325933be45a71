"""`keras-lowrank export MODEL.keras OUT.tflite`: a verified TFLite file from a saved model.

Loads the model, calls `keras_lowrank.export.export_tflite` (projection
folding, optional quantization, builtin ops only, parity check against Keras
in the `ai_edge_litert` interpreter) and prints its report. This command only
wires arguments to that function: conversion logic must not live here.
"""

NAME = "export"
HELP = "Export a .keras text model to a verified .tflite file (folding low-rank projections, optional quantization)."

QUANTIZE_CHOICES = ("dynamic", "float16", "int8", "int4")


def add_arguments(parser):
    parser.add_argument(
        "model", metavar="MODEL.keras",
        help="A saved Keras 3 model taking integer token ids, or raw text through its TextVectorization "
        "(the file then takes the ids and carries the vocabulary and tokenizer settings).",
    )
    parser.add_argument("output", metavar="OUT.tflite", help="Where to write the TFLite file.")
    parser.add_argument(
        "--quantize", choices=QUANTIZE_CHOICES, default=None,
        help="dynamic: int8 weights, float activations; float16: float16 weights; "
        "int8: full integer (needs --representative); int4: int4 weights of the fully connected ops "
        "(AI Edge Quantizer). Default: float32.",
    )
    parser.add_argument(
        "--no-fold", action="store_true",
        help="Keep the factorized form instead of folding projections B into their consumers.",
    )
    parser.add_argument(
        "--representative", metavar="DATA.npz",
        help="Calibration data for int8: a .npz with token ids x (n, sequence_length); for a raw-text "
        "model, its texts (a .csv/.tsv text column, or a .npz array x of strings).",
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


def load_texts(path, option="--representative"):
    """The texts of a .csv/.tsv (its `text` column) or of a `.npz` array `x` of strings."""
    import numpy as np

    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import check_input_file, load_arrays

    check_input_file(path, option)
    if path.lower().endswith((".csv", ".tsv")):
        from keras_lowrank.data.text_files import read_table

        try:
            texts, _ = read_table(path)
        except ValueError as error:
            raise CLIError(f"{option}: {path}: {error}") from None
    else:
        data = load_arrays(path, option)
        texts = data["x"] if "x" in data else (next(iter(data.values())) if len(data) == 1 else None)
        if texts is None:
            raise CLIError(f"{option}: {path} has no array x; found {sorted(data)}")
        texts = np.asarray(texts)
        if texts.ndim == 2 and texts.shape[1] == 1:
            texts = texts[:, 0]
        if texts.ndim != 1 or texts.dtype.kind not in "USO":
            raise CLIError(
                f"{option}: {path}: x must be a 1-D array of texts for a model that takes raw text, "
                f"received shape {texts.shape} and dtype {texts.dtype}"
            )
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
    if not len(texts):
        raise CLIError(f"{option}: {path} holds no texts")
    return list(texts)


def run(args):
    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import check_output_path, embedding_layers, load_model, writing
    from keras_lowrank.export.raw_text import takes_text

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
    model = load_model(args.model, custom_modules=args.custom_module)
    raw_text = takes_text(model)
    representative = None
    if args.representative:
        representative = (load_texts if raw_text else load_ids)(args.representative)
    if not embedding_layers(model):
        raise CLIError(f"{args.model} has no Embedding or LowRankEmbedding layer")

    from keras_lowrank.export import export_tflite

    if raw_text and args.sequence_length is not None:
        raise CLIError(
            "--sequence-length is for models of token ids; a raw-text model's length is its "
            "TextVectorization's output_sequence_length"
        )
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
