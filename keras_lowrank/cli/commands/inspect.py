"""`keras-lowrank inspect MODEL.keras`: what the embedding tables hold and what compression would keep.

For every embedding table of a saved model: its shape, parameters and stored
bytes, its rank if already factorized, a summary of its singular values, and
the rank, parameters and spectral energy kept at compressions 0.5, 0.8, 0.9
and 0.95. A table that is already factorized reports its own compression
against the dense float32 table, and its options compress it further: they
are relative to the table as stored (rank `r` -> `floor((1 - c) * r)`).
`--plot` draws the cumulative energy curves, `--json` writes the same records
for programs. This command only reads the model: it must not convert, train
or save it.
"""

NAME = "inspect"
HELP = "Show every embedding table of a .keras model, its spectrum, and what each compression keeps."

COMPRESSIONS = (0.5, 0.8, 0.9, 0.95)
# Image formats matplotlib writes without extra packages; it picks the format
# from the suffix, so the suffix is checked before any work.
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL.keras", help="A saved Keras 3 model.")
    parser.add_argument("--plot", metavar="PNG", help="Draw the cumulative spectral energy of each table to this PNG file.")
    parser.add_argument("--json", metavar="PATH", help="Also write the table as JSON.")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="Replace the --plot and --json files if they exist; the model is never replaced.",
    )
    parser.add_argument(
        "--custom-module", action="append", default=[], metavar="MODULE",
        help="Import this module first (it registers the model's custom objects). Repeatable.",
    )


def describe(model):
    """Returns one record per embedding table of `model` (used by `run` and tests)."""
    import numpy as np

    from keras_lowrank.cli.model_io import embedding_layers
    from keras_lowrank.decomposition import (
        energy_kept,
        rank_for_compression,
        singular_values,
    )
    from keras_lowrank.layers.table_layout import TableLayout

    records = []
    for path, layer in embedding_layers(model):
        layout = TableLayout.of(layer)
        factorized = layout.kind == "low-rank"
        input_dim, output_dim = int(layer.input_dim), int(layer.output_dim)
        quantization = getattr(layer, "quantization_mode", None)
        if layout.kind == "codebook":
            quantization = layout.describe()
        params = layout.params()
        table = dense_table(layer)
        spectrum = singular_values(table)
        if factorized:
            # A @ B has rank r at most: the rest of its spectrum is round-off.
            spectrum = spectrum[: int(layout.rank)]
        options, note = [], None
        for compression in COMPRESSIONS:
            if factorized:
                # A factorized table is compressed further by lowering its
                # rank; ratios against the dense table would name ranks
                # above the one it has.
                rank = _further_rank(int(layout.rank), compression)
                if rank == 0:
                    continue
            else:
                try:
                    rank = rank_for_compression(input_dim, output_dim, compression)
                except ValueError as error:
                    # One tiny table (e.g. a positional or a 2-row embedding)
                    # must not hide the report on the others.
                    note = f"not compressible: {str(error).strip().splitlines()[0]}"
                    options = []
                    break
            options.append(
                {
                    "compression": compression,
                    "rank": rank,
                    "params": rank * (input_dim + output_dim),
                    "energy_kept": float(energy_kept(spectrum, rank)),
                }
            )
        if factorized and not options:
            note = f"rank {int(layout.rank)} is too small to compress further"
        stored_bytes = int(_stored_bytes(layer, params))
        dense_bytes = input_dim * output_dim * 4
        records.append(
            {
                "layer": path,
                "type": type(layer).__name__,
                "input_dim": input_dim,
                "output_dim": output_dim,
                "rank": int(layout.rank) if factorized else None,
                "quantization": quantization,
                "params": int(params),
                "float32_bytes": int(params) * 4,
                "stored_bytes": stored_bytes,
                "dense_float32_bytes": dense_bytes,
                # The table's own compression: bytes saved against the dense
                # float32 table (0 for a dense float32 table).
                "compression": 1.0 - stored_bytes / dense_bytes,
                "singular_values": spectrum.tolist(),
                # Options of a factorized table compress it further.
                "options_relative_to": "stored" if factorized else "dense",
                "options": options,
                "note": note,
            }
        )
    return records


def _model_line(model, records):
    """What the whole model stores, next to its tables: what a user ships."""
    from keras_lowrank.layers.table_layout import table_bytes

    total = table_bytes(model)
    tables = sum(record["stored_bytes"] for record in records)
    share = f" ({tables / total:.1%} of it in the tables above)" if total else ""
    return f"whole model: {total:,} bytes stored{share}"


def _further_rank(rank, compression):
    """The largest rank keeping at most `(1 - compression)` of `rank`'s parameters (0: none)."""
    import fractions
    import math

    # Exact arithmetic: in floats, (1 - 0.9) * 10 is 0.99999... and rank 1
    # would be lost.
    return math.floor((1 - fractions.Fraction(str(compression))) * rank)


def dense_table(layer):
    """The float32 table `layer` looks ids up in, dequantized if it is quantized.

    A Keras `Embedding` quantized with `quantize("int8")` or `"int4"` stores
    integer codes and scales (per row, or per block for sub-channel int4);
    its `embeddings` property returns the codes, whose spectrum is not the
    table's. The layer's own lookup applies Keras' dequantization, whatever
    the mode, so the rows are read through it.
    """
    import numpy as np

    from keras_lowrank.layers import table_kinds

    if table_kinds.stored_table(layer) is layer:
        # Each kind decodes its own rows (dequantized, or from codes).
        return table_kinds.kind_of(layer).decoded_table(layer)
    if getattr(layer, "quantization_mode", None) is None and table_kinds.kind_of(layer).name != "codebook":
        return np.asarray(layer.embeddings, dtype=np.float32)
    import keras

    rows, chunk = int(layer.input_dim), 65536
    parts = [
        keras.ops.convert_to_numpy(layer(np.arange(start, min(start + chunk, rows), dtype="int32")))
        for start in range(0, rows, chunk)
    ]
    return np.concatenate(parts, axis=0).astype(np.float32)


def _stored_bytes(layer, params):
    """Bytes of the layer's variables at their stored dtypes (the library's one count)."""
    from keras_lowrank.compression import table_bytes

    return table_bytes(layer) if layer.weights else params * 4


def _format(records):
    lines = []
    header = f"{'layer':<28} {'type':<17} {'shape':>14} {'rank':>5} {'params':>12} {'bytes':>12}"
    lines.append(header)
    lines.append("-" * len(header))
    for r in records:
        shape = f"{r['input_dim']}x{r['output_dim']}"
        rank = "-" if r["rank"] is None else str(r["rank"])
        kind = r["type"] + (f"[{r['quantization']}]" if r["quantization"] else "")
        lines.append(
            f"{r['layer']:<28} {kind:<17} {shape:>14} {rank:>5} {r['params']:>12,} {r['stored_bytes']:>12,}"
        )
    for r in records:
        s = r["singular_values"]
        lines.append("")
        lines.append(
            f"{r['layer']}: {len(s)} singular values, largest {s[0]:.4g}, smallest {s[-1]:.4g}"
        )
        if r["rank"] is not None:
            lines.append(
                f"  factorized at rank {r['rank']}: {r['stored_bytes']:,} bytes, compression "
                f"{r['compression']:.2f} of the dense float32 {r['input_dim']}x{r['output_dim']} "
                f"table ({r['dense_float32_bytes']:,} bytes)"
            )
        if r.get("note"):
            lines.append(f"  {r['note']}")
            continue
        if r.get("options_relative_to") == "stored":
            lines.append(
                f"  further compression of the table as stored (energy kept of its rank-{r['rank']} spectrum):"
            )
        lines.append(f"  {'compression':>11} {'rank':>5} {'params':>12} {'energy kept':>12}")
        for option in r["options"]:
            lines.append(
                f"  {option['compression']:>11.2f} {option['rank']:>5} {option['params']:>12,} "
                f"{100 * option['energy_kept']:>11.2f}%"
            )
    return "\n".join(lines)


def plot_spectra(records, path):
    """Draws the cumulative energy curve of each table, marking the standard compressions."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        from keras_lowrank.cli.errors import CLIError

        raise CLIError("--plot needs matplotlib: pip install keras-lowrank[plot]") from error
    import numpy as np

    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for r in records:
        s = np.asarray(r["singular_values"])
        energy = np.cumsum(s**2) / max(np.sum(s**2), np.finfo(float).tiny)
        line, = axis.plot(np.arange(1, len(s) + 1), energy, label=r["layer"])
        for option in r["options"]:
            axis.scatter([option["rank"]], [option["energy_kept"]], color=line.get_color(), s=14)
            axis.annotate(
                f"c={option['compression']:g}", (option["rank"], option["energy_kept"]),
                textcoords="offset points", xytext=(4, -10), fontsize=7,
            )
    axis.set_xlabel("rank")
    axis.set_ylabel("share of squared Frobenius norm kept")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title("Embedding spectrum (cumulative energy)")
    figure.tight_layout()
    from keras_lowrank.utils.atomic_write import atomic_path

    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=120)
    finally:
        plt.close(figure)


def run(args):
    from keras_lowrank.cli.errors import CLIError
    from keras_lowrank.cli.model_io import check_output_path, load_model, writing
    from keras_lowrank.utils.atomic_write import write_json

    inputs = [(None, args.model)]
    if args.plot:
        check_output_path(args.plot, PLOT_SUFFIXES, overwrite=args.overwrite, option="--plot", inputs=inputs)
    if args.json:
        check_output_path(
            args.json, overwrite=args.overwrite, option="--json", inputs=inputs,
            outputs=[("--plot", args.plot)],
        )
    model = load_model(args.model, custom_modules=args.custom_module)
    records = describe(model)
    if not records:
        raise CLIError(f"{args.model} has no Embedding or LowRankEmbedding layer")
    print(_format(records))
    print(_model_line(model, records))
    if args.plot:
        with writing(args.plot, "--plot"):
            plot_spectra(records, args.plot)
        print(f"\nwrote {args.plot}")
    if args.json:
        with writing(args.json, "--json"):
            write_json(args.json, records, indent=2)
        print(f"wrote {args.json}")
    return 0
