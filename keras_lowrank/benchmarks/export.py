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
median reported. Results go to `results.json`; `results.md` is rendered from
the JSON so it can be re-rendered without re-running.

The weights are random (an SVD of a random table is the worst case for
accuracy, and irrelevant to size and speed); this module measures, it does
not train. It must not be imported by the library itself.
"""

import json
import os
import platform
import random
import sys
import tempfile
import time

DEFAULT_OUT = os.path.join("docs", "results", "export")
VARIANTS = (
    ("full_float32", "full float32", dict(low_rank=False, quantize=None)),
    ("full_dynamic", "full dynamic-range int8", dict(low_rank=False, quantize="dynamic")),
    ("full_float16", "full float16", dict(low_rank=False, quantize="float16")),
    ("lowrank_folded", "low-rank c=0.9, folded", dict(low_rank=True, fold=True)),
    ("lowrank_unfolded", "low-rank c=0.9, unfolded", dict(low_rank=True, fold=False)),
    ("lowrank_int8", "low-rank c=0.9 + int8 factors, folded", dict(low_rank=True, fold=True, int8=True)),
)


def add_arguments(parser):
    """Adds the options of `keras-lowrank bench export` to `parser`."""
    parser.add_argument("--out", default=DEFAULT_OUT, help="Output folder (results.json, results.md).")
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--models", nargs="+", default=["dan", "lstm"], choices=["dan", "lstm"])
    parser.add_argument("--embedding-dim", type=int, default=300)
    parser.add_argument("--sequence-length", type=int, default=40)
    parser.add_argument("--compression", type=float, default=0.9)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=15, help="Interleaved rounds per measurement.")
    parser.add_argument("--calls", type=int, default=20, help="Calls timed per round (batch 1; fewer at larger batches).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="Short run: V=20,000 only, 5 rounds.")
    parser.add_argument("--plot", action="store_true", help="Also write results.png (needs matplotlib).")


def run(args):
    """Runs the benchmark; writes results.json and results.md; returns 0."""
    if args.quick:
        args.vocab_sizes = [min(args.vocab_sizes)]
        args.repeats = min(args.repeats, 5)
        args.calls = min(args.calls, 10)
    if not 0 < args.compression < 1:
        raise ValueError(
            "Expected `--compression` in (0, 1), received: "
            f"compression={args.compression}"
        )
    os.makedirs(args.out, exist_ok=True)
    results = {
        "command": " ".join(["keras-lowrank", "bench", "export"] + _argv_tail()),
        "machine": _machine(),
        "settings": {
            k: getattr(args, k)
            for k in (
                "vocab_sizes", "models", "embedding_dim", "sequence_length",
                "compression", "batch_sizes", "repeats", "calls", "seed", "quick",
            )
        },
        "runs": [],
    }
    for model_name in args.models:
        for vocab in args.vocab_sizes:
            print(f"[bench export] {model_name} V={vocab:,}", flush=True)
            results["runs"].append(_one_config(model_name, vocab, args))
            _write(results, args.out)
    _write(results, args.out)
    if args.plot:
        _plot(results, os.path.join(args.out, "results.png"))
    print(render_markdown(results))
    return 0


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
    low = _low_rank_copy(full, rank, quantize=False)
    low_q = _low_rank_copy(full, rank, quantize=True)
    keras_models = {"full": full, "lowrank": low, "lowrank_int8": low_q}

    rng = np.random.default_rng(args.seed)
    inputs = {b: _ids(rng, b, L, vocab) for b in args.batch_sizes}
    probe = _ids(rng, 16, L, vocab)

    exported, report_rows = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, _, spec in VARIANTS:
            source = "full" if not spec["low_rank"] else (
                "lowrank_int8" if spec.get("int8") else "lowrank"
            )
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

    embedding_full = vocab * d * 4
    rows = []
    for key, label, spec in VARIANTS:
        row = {"variant": key, "label": label, **report_rows[key]}
        row["size_ratio_vs_full"] = row["bytes"] / report_rows["full_float32"]["bytes"]
        for b in args.batch_sizes:
            stats = latency[b][f"tflite:{key}"]
            row[f"tflite_b{b}"] = stats
            row[f"tflite_b{b}_ratio"] = _ratio(latency[b], f"tflite:{key}", "tflite:full_float32")
            keras_key = f"keras:{row['source']}"
            row[f"keras_b{b}"] = latency[b][keras_key]
            row[f"keras_b{b}_ratio"] = _ratio(latency[b], keras_key, "keras:full")
        rows.append(row)
    lr_embedding = vocab * rank * 4 + rank * d * 4
    lr_embedding_int8 = vocab * rank + vocab * 4 + rank * d + d * 4
    return {
        "model": model_name,
        "vocab_size": vocab,
        "embedding_dim": d,
        "rank": rank,
        "embedding_bytes": {
            "full_float32": embedding_full,
            "lowrank_float32": lr_embedding,
            "lowrank_int8": lr_embedding_int8,
            "smaller_x_float32": embedding_full / lr_embedding,
            "smaller_x_int8": embedding_full / lr_embedding_int8,
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
    """The classifier, from `keras_lowrank.models` when available."""
    import keras

    try:
        from keras_lowrank import models

        if model_name == "dan":
            return models.dan_classifier(vocab, 2, embedding_dim=d, sequence_length=L)
        # Forward LSTM: a backward one exports with a static batch only.
        return models.lstm_classifier(
            vocab, 2, embedding_dim=d, sequence_length=L, bidirectional=False
        )
    except (ImportError, AttributeError, TypeError):
        pass
    inputs = keras.Input((L,), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocab, d, mask_zero=True, name="embedding")(inputs)
    if model_name == "dan":
        x = keras.layers.GlobalAveragePooling1D()(x)
        x = keras.layers.Dense(300, activation="relu")(x)
    else:
        x = keras.layers.LSTM(128)(x)
    outputs = keras.layers.Dense(2, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"{model_name}_classifier")


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


def _ids(rng, batch, L, vocab):
    import numpy as np

    ids = rng.integers(1, vocab, size=(batch, L)).astype("int32")
    lengths = rng.integers(L // 4, L + 1, size=batch)
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids


def _machine():
    import keras
    import tensorflow as tf

    try:
        import ai_edge_litert

        litert = getattr(ai_edge_litert, "__version__", "installed")
    except ImportError:
        litert = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": litert,
        "platform": platform.platform(),
    }


def _argv_tail():
    argv = sys.argv[1:]
    if "export" in argv:
        return argv[argv.index("export") + 1 :]
    return argv


def _write(results, out):
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(render_markdown(results))


def render_markdown(results):
    """Renders the results table (Markdown) from the JSON results."""
    batch_sizes = results["settings"]["batch_sizes"]
    lines = [
        "# Export benchmark results",
        "",
        f"Command: `{results['command']}`",
        "",
        "Machine: " + ", ".join(f"{k}={v}" for k, v in results["machine"].items()),
        "",
        "Latency: median ms per call over interleaved rounds [25th-75th "
        "percentile]; ratio = median of per-round ratios against the full "
        "float32 model (TFLite vs TFLite, Keras vs Keras). TFLite uses one "
        "thread. Max diff: max |output - Keras model it was exported from|.",
        "",
    ]
    for run in results["runs"]:
        e = run["embedding_bytes"]
        lines += [
            f"## {run['model'].upper()}, V={run['vocab_size']:,}, "
            f"d={run['embedding_dim']}, rank={run['rank']}",
            "",
            f"Embedding bytes: full float32 {e['full_float32']:,}; low-rank "
            f"float32 {e['lowrank_float32']:,} ({e['smaller_x_float32']:.2f}x "
            f"smaller); low-rank int8 {e['lowrank_int8']:,} "
            f"({e['smaller_x_int8']:.2f}x smaller).",
            "",
        ]
        header = "| variant | .tflite bytes | vs full |"
        sep = "|---|---:|---:|"
        for b in batch_sizes:
            header += f" TFLite b{b} ms | ratio | Keras b{b} ms | ratio |"
            sep += "---:|---:|---:|---:|"
        header += " max diff |"
        sep += "---:|"
        lines += [header, sep]
        for row in run["rows"]:
            cells = [
                row["label"],
                f"{row['bytes']:,}",
                f"{row['size_ratio_vs_full']:.3f}",
            ]
            for b in batch_sizes:
                t, k = row[f"tflite_b{b}"], row[f"keras_b{b}"]
                cells += [
                    f"{t['median_ms']:.3f} [{t['p25_ms']:.3f}-{t['p75_ms']:.3f}]",
                    f"{row[f'tflite_b{b}_ratio']['median']:.2f}",
                    f"{k['median_ms']:.3f} [{k['p25_ms']:.3f}-{k['p75_ms']:.3f}]",
                    f"{row[f'keras_b{b}_ratio']['median']:.2f}",
                ]
            cells.append(f"{row['max_abs_difference']:.2g}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


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
    fig.savefig(path, dpi=100)
    plt.close(fig)
