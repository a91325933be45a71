"""Size and latency of exported classifiers: full vs low-rank, side by side.

`keras-lowrank bench export` builds a DAN and an LSTM classifier at each
vocabulary size, factorizes the embedding at 90% compression, exports every
variant to TFLite (`keras_lowrank.export.export_tflite`) and measures, in
one process and interleaved so that machine load hits every variant alike:

- `.tflite` bytes and the embedding's share of them;
- Keras latency (a `tf.function` around the model) and TFLite latency
  (`ai_edge_litert` interpreter, one thread) at batch 1 and batch 32;
- the max output difference against the Keras model it came from.

Every latency is the median over repeated rounds; ratios against the full
float32 model are computed per round (same round, same load) and their
median reported. Each configuration (model, vocabulary size, width,
sequence length, compression, batch sizes) is one entry of `results.json`
carrying its own command, machine and load average; `--merge` replaces the
configurations measured now and keeps the others, so a long grid can be
measured in parts. `results.md`, and with `--doc` the page's generated
section, are rendered from the JSON (`--render-only` re-renders without
measuring; see `keras_lowrank.benchmarks.output`).

The weights are random (an SVD of a random table is the worst case for
accuracy, and irrelevant to size and speed); this module measures, it does
not train. It must not be imported by the library itself.
"""

import os
import random
import tempfile
import time

from keras_lowrank.benchmarks import environment
from keras_lowrank.benchmarks import markdown
from keras_lowrank.benchmarks import output
from keras_lowrank.utils.atomic_write import atomic_path

VARIANTS = (
    ("full_float32", "full float32", dict(low_rank=False, quantize=None)),
    ("full_dynamic", "full dynamic-range int8", dict(low_rank=False, quantize="dynamic")),
    ("full_float16", "full float16", dict(low_rank=False, quantize="float16")),
    ("lowrank_folded", "low-rank c={c}, folded", dict(low_rank=True, fold=True)),
    ("lowrank_unfolded", "low-rank c={c}, unfolded", dict(low_rank=True, fold=False)),
    ("lowrank_int8", "low-rank c={c} + int8 factors, folded", dict(low_rank=True, fold=True, int8=True)),
    ("codebook", "codebook d/4 x 16 codes, int8 codebooks", dict(low_rank=False, codebook=True)),
)
# The codebook variant: 4 dimensions a group, 16 codewords (4-bit codes).
CODEBOOK_SUB_DIM, CODEBOOK_CODES = 4, 16
# The reference of every ratio: always measured.
REFERENCE = "full_float32"
MODELS = ("dan", "lstm")
DEFAULTS = {
    "vocab_sizes": [20000, 100000],
    "models": list(MODELS),
    "embedding_dim": 300,
    "sequence_length": 40,
    "compression": 0.9,
    "batch_sizes": [1, 32],
    "repeats": 15,
    "calls": 20,
    "seed": 0,
    "variants": [key for key, _, _ in VARIANTS],
}
# What identifies a configuration when results are merged.
CONFIG_KEYS = ("model", "vocab_size", "embedding_dim", "sequence_length", "compression", "batch_sizes")


def add_arguments(parser):
    """Adds the options of `keras-lowrank bench export` to `parser`."""
    output.add_output_arguments(parser, "export")
    parser.add_argument(
        "--merge", action="store_true",
        help="Keep the configurations of an existing results.json that this run does "
        "not measure (a configuration is model, V, d, sequence length, compression "
        "and batch sizes); the ones measured now replace their old entries.",
    )
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=DEFAULTS["vocab_sizes"],
                        help="Vocabulary sizes V (default: 20000 100000).")
    parser.add_argument("--models", nargs="+", default=DEFAULTS["models"], choices=MODELS,
                        help="Classifiers, measured in this order (default: dan lstm).")
    parser.add_argument("--embedding-dim", type=int, default=DEFAULTS["embedding_dim"],
                        help="Embedding width d (default: 300).")
    parser.add_argument("--sequence-length", type=int, default=DEFAULTS["sequence_length"],
                        help="Token ids per example (default: 40).")
    parser.add_argument("--compression", type=float, default=DEFAULTS["compression"],
                        help="Share of embedding parameters removed, in (0, 1) (default: 0.9).")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=DEFAULTS["batch_sizes"],
                        help="Batch sizes timed (default: 1 32).")
    parser.add_argument("--repeats", type=int, default=DEFAULTS["repeats"],
                        help="Interleaved rounds per measurement (default: 15).")
    parser.add_argument("--calls", type=int, default=DEFAULTS["calls"],
                        help="Calls timed per round at batch 1; a quarter of it (at least 3) "
                        "at larger batches (default: 20).")
    parser.add_argument("--variants", nargs="+", default=DEFAULTS["variants"],
                        choices=DEFAULTS["variants"], metavar="VARIANT",
                        help="Export variants to measure (default: all of "
                        + ", ".join(DEFAULTS["variants"]) + f"); {REFERENCE} is always included.")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="Random seed (default: 0).")
    parser.add_argument("--quick", action="store_true", help="Short run: the smallest V only, 5 rounds.")
    parser.add_argument("--plot", action="store_true", help="Also write results.png (needs matplotlib).")


def run(args):
    """Measures (or re-renders with `--render-only`); writes the results; returns 0."""
    output.check_doc(args, "export")
    if args.render_only:
        results = _upgrade(output.load_results(args.output))
    else:
        results = _measure_all(args)
    text = output.publish(
        results, args, render_markdown, name="export",
        title="Export benchmark results", summarize=summarize,
    )
    if args.plot:
        _plot(results, os.path.join(args.output, "results.png"))
    print(text)
    return 0


def _measure_all(args):
    if args.quick:
        args.vocab_sizes = [min(args.vocab_sizes)]
        args.repeats = min(args.repeats, 5)
        args.calls = min(args.calls, 10)
    _validate(args)
    args.variants = [key for key, _, _ in VARIANTS if key in args.variants or key == REFERENCE]
    command = _command(args)
    results = {"benchmark": "export", "runs": []}
    if args.merge and os.path.isfile(os.path.join(args.output, output.RESULTS_JSON)):
        results["runs"] = _upgrade(output.load_results(args.output))["runs"]
    saved = False
    for model_name in args.models:
        for vocab in args.vocab_sizes:
            print(f"[bench export] {model_name} V={vocab:,}", flush=True)
            machine = environment.describe_machine(("numpy", "tensorflow", "keras", "ai_edge_litert"))
            run = _one_config(model_name, vocab, args)
            run["settings"] = {k: getattr(args, k) for k in ("repeats", "calls", "seed", "quick", "variants")}
            run["command"] = command
            run["machine"] = output.finish_machine(machine)
            results["runs"] = _merged(results["runs"], run)
            # Save after every configuration: an interrupted grid keeps what
            # it finished (and the file it replaced is kept under earlier/).
            if not saved:
                output.save_results(results, args.output)
                saved = True
            else:
                output.write_progress(results, args.output)
    return results


def _validate(args):
    if not 0 < args.compression < 1:
        raise ValueError(
            "Expected `--compression` in (0, 1), received: "
            f"compression={args.compression}"
        )
    for name in ("embedding_dim", "sequence_length", "repeats", "calls"):
        if getattr(args, name) < 1:
            raise ValueError(
                f"Expected `--{name.replace('_', '-')}` to be a positive integer, "
                f"received: {name}={getattr(args, name)}"
            )
    for name, smallest in (("vocab_sizes", 2), ("batch_sizes", 1)):
        if any(v < smallest for v in getattr(args, name)):
            raise ValueError(
                f"Expected every value of `--{name.replace('_', '-')}` to be an integer "
                f">= {smallest}, received: {name}={getattr(args, name)}"
            )


def _command(args):
    options = []
    for name in ("models", "vocab_sizes", "embedding_dim", "sequence_length", "compression",
                 "batch_sizes", "repeats", "calls", "variants", "seed"):
        value = getattr(args, name)
        if value != DEFAULTS[name] and not (name in ("repeats", "calls") and args.quick):
            options.append(("--" + name.replace("_", "-"), value))
    if args.quick:
        options.append(("--quick", True))
    if args.merge:
        options.append(("--merge", True))
    return output.command("export", options, args)


def _config_key(run):
    return tuple(
        tuple(run[key]) if isinstance(run[key], list) else run[key] for key in CONFIG_KEYS
    )


def _merged(runs, new):
    """`runs` with `new` replacing the entry of the same configuration, sorted."""
    kept = [r for r in runs if _config_key(r) != _config_key(new)]
    kept.append(new)
    order = {name: i for i, name in enumerate(MODELS)}
    return sorted(kept, key=lambda r: (order.get(r["model"], len(order)), r["vocab_size"],
                                       r["embedding_dim"], r["sequence_length"]))


def _upgrade(results):
    """Results of any version in the current layout (settings per configuration).

    The first version kept one `command`, `machine` and `settings` for the
    whole file; each configuration now carries its own.
    """
    runs = []
    for run in results.get("runs", []):
        if "settings" not in run:
            settings = results.get("settings", {})
            run = dict(run)
            for key in ("batch_sizes", "sequence_length", "compression"):
                run.setdefault(key, settings.get(key))
            run["settings"] = {
                k: settings[k] for k in ("repeats", "calls", "seed", "quick") if k in settings
            }
            run.setdefault("command", results.get("command"))
            run.setdefault("machine", results.get("machine", {}))
        runs.append(run)
    return {"benchmark": "export", "runs": runs}


def _one_config(model_name, vocab, args):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_lowrank.export import export_tflite
    from keras_lowrank.export import tflite as tfl

    keras.utils.set_random_seed(args.seed)
    d, L = args.embedding_dim, args.sequence_length
    full = _build(model_name, vocab, d, L)
    rank = max(1, int((1 - args.compression) * vocab * d / (vocab + d)))
    variants = [(key, label, spec) for key, label, spec in VARIANTS if key in args.variants]
    sources = {_source(spec) for _, _, spec in variants}
    keras_models = {"full": full}
    if "lowrank" in sources:
        keras_models["lowrank"] = _low_rank_copy(full, rank, quantize=False)
    if "lowrank_int8" in sources:
        keras_models["lowrank_int8"] = _low_rank_copy(full, rank, quantize=True)
    if "codebook" in sources:
        keras_models["codebook"] = _codebook_copy(full)

    rng = np.random.default_rng(args.seed)
    inputs = {b: _ids(rng, b, L, vocab) for b in args.batch_sizes}
    probe = _ids(rng, 16, L, vocab)

    exported, report_rows = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, _, spec in variants:
            source = _source(spec)
            path = os.path.join(tmp, f"{key}.tflite")
            start = time.perf_counter()
            report = export_tflite(
                keras_models[source],
                path,
                quantize=spec.get("quantize"),
                fold=spec.get("fold", True),
                probe=probe,
            )
            with open(path, "rb") as f:
                exported[key] = f.read()
            reference = keras.ops.convert_to_numpy(full(probe, training=False))
            vs_full = float(np.max(np.abs(tfl.run_tflite(exported[key], probe) - reference)))
            report_rows[key] = {
                "source": source,
                "bytes": report.bytes,
                "max_abs_difference": report.max_abs_difference,
                "max_abs_difference_vs_full_keras": vs_full,
                "folded": report.folded,
                "export_seconds": round(time.perf_counter() - start, 2),
                "ops": report.ops,
            }

    keras_fns = {
        name: tf.function(lambda x, m=m: m(x, training=False), jit_compile=False)
        for name, m in keras_models.items()
    }
    interpreters = {}
    for key in exported:
        for b in args.batch_sizes:
            it = tfl.make_interpreter(exported[key], num_threads=1)
            tfl.prepare_interpreter(it, inputs[b].shape)
            interpreters[(key, b)] = it

    def tflite_call(key, b):
        it = interpreters[(key, b)]
        return lambda: tfl.invoke(it, inputs[b])

    def keras_call(name, b):
        fn = keras_fns[name]
        x = tf.constant(inputs[b])
        return lambda: fn(x).numpy()

    latency = {}
    for b in args.batch_sizes:
        calls = max(3, args.calls if b == 1 else args.calls // 4)
        candidates = {f"tflite:{k}": tflite_call(k, b) for k in exported}
        candidates.update({f"keras:{k}": keras_call(k, b) for k in keras_models})
        for fn in candidates.values():  # warm up: trace, allocate
            fn()
            fn()
        latency[b] = _interleaved(candidates, args.repeats, calls, seed=args.seed + b)

    from keras_lowrank.compression import TableLayout

    embedding_full = TableLayout(vocab, d).stored_bytes()
    rows = []
    for key, label, spec in variants:
        row = {"variant": key, "label": label.format(c=f"{args.compression:g}"), **report_rows[key]}
        row["size_ratio_vs_full"] = row["bytes"] / report_rows["full_float32"]["bytes"]
        for b in args.batch_sizes:
            stats = latency[b][f"tflite:{key}"]
            row[f"tflite_b{b}"] = stats
            row[f"tflite_b{b}_ratio"] = _ratio(latency[b], f"tflite:{key}", "tflite:full_float32")
            keras_key = f"keras:{row['source']}"
            row[f"keras_b{b}"] = latency[b][keras_key]
            row[f"keras_b{b}_ratio"] = _ratio(latency[b], keras_key, "keras:full")
        rows.append(row)
    lr_embedding = TableLayout(vocab, d, rank=rank).stored_bytes()
    lr_embedding_int8 = TableLayout(vocab, d, rank=rank, storage="int8").stored_bytes()
    return {
        "model": model_name,
        "vocab_size": vocab,
        "embedding_dim": d,
        "sequence_length": L,
        "compression": args.compression,
        "batch_sizes": list(args.batch_sizes),
        "rank": rank,
        "embedding_bytes": {
            "full_float32": embedding_full,
            "lowrank_float32": lr_embedding,
            "lowrank_int8": lr_embedding_int8,
            "smaller_x_float32": embedding_full / lr_embedding,
            "smaller_x_int8": embedding_full / lr_embedding_int8,
            "codebook": TableLayout(vocab, d, groups=d // CODEBOOK_SUB_DIM, codes=CODEBOOK_CODES,
                                    storage="int8").stored_bytes(),
        },
        "rows": rows,
    }


def _interleaved(candidates, repeats, calls, seed):
    """Per-call seconds of each candidate over `repeats` shuffled rounds."""
    rng = random.Random(seed)
    names = list(candidates)
    samples = {n: [] for n in names}
    for _ in range(repeats):
        rng.shuffle(names)
        for n in names:
            fn = candidates[n]
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[n].append((time.perf_counter() - start) / calls)
    return {n: _stats(s) for n, s in samples.items()}


def _stats(samples):
    import numpy as np

    s = np.asarray(samples)
    return {
        "median_ms": float(np.median(s) * 1e3),
        "p25_ms": float(np.percentile(s, 25) * 1e3),
        "p75_ms": float(np.percentile(s, 75) * 1e3),
        "samples_ms": [float(x * 1e3) for x in s],
    }


def _ratio(latency, name, reference):
    """Median over rounds of the per-round ratio (same round, same load)."""
    import numpy as np

    a = np.asarray(latency[name]["samples_ms"])
    b = np.asarray(latency[reference]["samples_ms"])
    ratios = a / b
    return {
        "median": float(np.median(ratios)),
        "p25": float(np.percentile(ratios, 25)),
        "p75": float(np.percentile(ratios, 75)),
    }


def _build(model_name, vocab, d, L):
    """The classifier from `keras_lowrank.models` (2 classes)."""
    from keras_lowrank import models

    if model_name == "dan":
        return models.dan_classifier(vocab, 2, embedding_dim=d, sequence_length=L)
    # Forward LSTM: a backward one exports with a static batch only.
    return models.lstm_classifier(
        vocab, 2, embedding_dim=d, sequence_length=L, bidirectional=False
    )


def _source(spec):
    """Which Keras model a variant is exported from."""
    if spec.get("codebook"):
        return "codebook"
    if not spec["low_rank"]:
        return "full"
    return "lowrank_int8" if spec.get("int8") else "lowrank"


def _low_rank_copy(model, rank, quantize):
    """`model` with its embedding replaced by the rank-`rank` SVD factors."""
    import keras
    import numpy as np

    from keras_lowrank.layers import LowRankEmbedding

    embedding = model.get_layer("embedding")
    table = keras.ops.convert_to_numpy(embedding.embeddings).astype("float64")
    # Truncated SVD through the d x d Gram matrix (V >> d): cheap and exact
    # enough for timing and size.
    eigenvalues, vectors = np.linalg.eigh(table.T @ table)
    order = np.argsort(eigenvalues)[::-1][:rank]
    s = np.sqrt(np.maximum(eigenvalues[order], 1e-30))
    vt = vectors[:, order].T
    u = (table @ vt.T) / s
    layer = LowRankEmbedding(
        embedding.input_dim, embedding.output_dim, rank,
        mask_zero=embedding.mask_zero, name="embedding",
    )

    def swap(l):
        return layer if l is embedding else l

    low = keras.models.clone_model(model, clone_function=swap)
    layer.lookup.assign((u * np.sqrt(s)).astype("float32"))
    layer.projection.assign((np.sqrt(s)[:, None] * vt).astype("float32"))
    if quantize:
        layer.quantize("int8")
    return low


def _codebook_copy(model):
    """`model` with its embedding product-quantized (frozen codes, int8 codebooks)."""
    import keras

    from keras_lowrank.layers import CodebookEmbedding

    embedding = model.get_layer("embedding")
    d = embedding.output_dim
    # Random weights: a few k-means iterations are as good as many for size and speed.
    layer = CodebookEmbedding.from_embedding(
        embedding, d // CODEBOOK_SUB_DIM, CODEBOOK_CODES, codebook_dtype="int8", iterations=2)

    def swap(l):
        return layer if l is embedding else l

    return keras.models.clone_model(model, clone_function=swap)


def _ids(rng, batch, L, vocab):
    import numpy as np

    ids = rng.integers(1, vocab, size=(batch, L)).astype("int32")
    lengths = rng.integers(L // 4, L + 1, size=batch)
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids


def render_markdown(results, link_base="", heading_level=2):
    """Renders the results (as in `results.json`) as Markdown.

    Args:
        results: the results dict (any version; see `_upgrade`).
        link_base: path from the page being written to the output folder.
        heading_level: Markdown level of the per-configuration headings.

    Returns:
        A summary table (one row per configuration), then per configuration
        its command, machine and load, embedding bytes and the full table.
    """
    results = _upgrade(results)
    runs = results["runs"]
    lines = [
        "Summary per configuration: the folded low-rank export (and the same with "
        "int8 factors) against the full float32 export measured in the same run; "
        "latency ratios are medians of per-round ratios (TFLite, one thread). "
        "Goal of issue 4: a ratio <= 1.0 at every batch size with an embedding "
        ">= 9.5x smaller.",
        "",
    ]
    summary = []
    for run in runs:
        rows = {row["variant"]: row for row in run["rows"]}
        e = run["embedding_bytes"]
        folded, int8 = rows.get("lowrank_folded"), rows.get("lowrank_int8")
        ratios = [folded[f"tflite_b{b}_ratio"]["median"] for b in run["batch_sizes"]] if folded else []
        goal = "n/a" if not ratios else (
            "met" if max(ratios) <= 1.0 and e["smaller_x_float32"] >= 9.5 else "not met"
        )
        load = environment.normalize_machine(run["machine"]).get("load_average_before")
        summary.append([
            run["model"].upper(), f"{run['vocab_size']:,}", run["rank"],
            f"{e['smaller_x_float32']:.2f}x / {e['smaller_x_int8']:.2f}x",
            _cell(folded, "size_ratio_vs_full", "{:.3f}") + " / " + _cell(int8, "size_ratio_vs_full", "{:.3f}"),
            " / ".join(f"{r:.2f}" for r in ratios) or "n/a",
            goal,
            "not recorded" if load is None else f"{load[0]:g}",
        ])
    lines += markdown.table(
        ["model", "V", "rank", "embedding smaller (float32 / int8)",
         ".tflite vs full (folded / + int8)",
         "TFLite latency ratio, folded (" + " / ".join(
             f"b{b}" for b in (runs[0]["batch_sizes"] if runs else [])) + ")",
         "goal", "1-min load before"],
        summary,
    )
    lines += [
        "",
        "Latency below: median ms per call over interleaved rounds [25th-75th "
        "percentile]; ratio = median of per-round ratios against the full "
        "float32 model (TFLite vs TFLite, Keras vs Keras). TFLite uses one "
        "thread. Max diff: max |output - Keras model it was exported from|. "
        f"Raw numbers: [{output.RESULTS_JSON}]({output.link(link_base, output.RESULTS_JSON)}).",
        "",
    ]
    hashes = "#" * heading_level
    for run in runs:
        e = run["embedding_bytes"]
        lines += [
            f"{hashes} {run['model'].upper()}, V={run['vocab_size']:,}, "
            f"d={run['embedding_dim']}, rank={run['rank']}",
            "",
            f"Command: `{run['command']}`" + (
                " (written before `--out` was renamed `--output`)"
                if " --out " in f"{run['command']} " else ""
            ),
            "",
            f"Machine: {environment.machine_summary(run['machine'])}",
            "",
            f"Embedding bytes: full float32 {e['full_float32']:,}; low-rank "
            f"float32 {e['lowrank_float32']:,} ({e['smaller_x_float32']:.2f}x "
            f"smaller); low-rank int8 {e['lowrank_int8']:,} "
            f"({e['smaller_x_int8']:.2f}x smaller)"
            + (f"; codebook {e['codebook']:,} ({e['full_float32'] / e['codebook']:.2f}x smaller)"
               if e.get("codebook") else "") + ".",
            "",
        ]
        header = ["variant", ".tflite bytes", "vs full"]
        for b in run["batch_sizes"]:
            header += [f"TFLite b{b} ms", "ratio", f"Keras b{b} ms", "ratio"]
        header.append("max diff")
        rows = []
        for row in run["rows"]:
            cells = [row["label"], f"{row['bytes']:,}", f"{row['size_ratio_vs_full']:.3f}"]
            for b in run["batch_sizes"]:
                t, k = row[f"tflite_b{b}"], row[f"keras_b{b}"]
                cells += [
                    f"{t['median_ms']:.3f} [{t['p25_ms']:.3f}-{t['p75_ms']:.3f}]",
                    f"{row[f'tflite_b{b}_ratio']['median']:.2f}",
                    f"{k['median_ms']:.3f} [{k['p25_ms']:.3f}-{k['p75_ms']:.3f}]",
                    f"{row[f'keras_b{b}_ratio']['median']:.2f}",
                ]
            cells.append(f"{row['max_abs_difference']:.2g}")
            rows.append(cells)
        lines += markdown.table(header, rows) + [""]
    return "\n".join(lines)


def summarize(results):
    """One phrase about a results dict, for the list of earlier measurements."""
    return "configurations " + ", ".join(
        f"{run['model'].upper()} V={run['vocab_size']:,}" for run in _upgrade(results)["runs"]
    )


def _cell(row, key, fmt):
    return "n/a" if row is None else fmt.format(row[key])


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.5), squeeze=False)
    for ax, run in zip(axes[0], runs):
        labels = [r["variant"] for r in run["rows"]]
        ax.barh(labels, [r["bytes"] / 1e6 for r in run["rows"]])
        ax.set_xlabel("MB")
        ax.set_title(f"{run['model']} V={run['vocab_size']:,}")
        ax.invert_yaxis()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
