"""`keras-lowrank bench export-text`: a raw-text classifier from training to a LiteRT file.

What a user with a typical Keras text classifier does, measured end to end:
a DAN that holds its `TextVectorization` (string input, embedding, masked
mean, two `Dense`) is trained on a bundled dataset, compressed with
`keras_lowrank.compress(size=...)` on its raw texts, and both models are
exported with `export_tflite` (float32, and LiteRT dynamic-range int8 as the
baseline a user would try first). Each file is then run on every test text
through `keras_lowrank.export.TextRunner` (the reference tokenizer plus the
interpreter), so the numbers are those of the file from raw strings:

- file bytes, and the `.keras` file of each model next to its weights' bytes;
- test accuracy of the file, how many test texts get the same class as the
  Keras model it came from, and the max |logit difference|;
- batch-1 latency from the string (tokenize + invoke, one thread), the
  median over interleaved rounds, and its ratio to the uncompressed float32
  file measured in the same round.

It must not be imported by the library itself.
"""

import os
import statistics
import tempfile
import time

from keras_lowrank.benchmarks import output as output_lib
from keras_lowrank.benchmarks.environment import machine_summary

NAME = "export-text"
VARIANTS = (
    ("full_float32", "uncompressed, float32", "full", None),
    ("full_dynamic", "uncompressed, LiteRT dynamic-range int8", "full", "dynamic"),
    ("compressed_float32", "compress(size={size:g}), float32", "compressed", None),
    ("compressed_dynamic", "compress(size={size:g}), dynamic-range int8", "compressed", "dynamic"),
)
REFERENCE = "full_float32"


def add_arguments(parser):
    parser.add_argument("--dataset", default="snips", help="Bundled dataset (default: snips).")
    parser.add_argument("--size", type=float, default=0.05, help="compress() size (default: 0.05).")
    parser.add_argument("--embedding-dim", type=int, default=64, help="Table width (default: 64).")
    parser.add_argument("--sequence-length", type=int, default=32, help="TextVectorization length (default: 32).")
    parser.add_argument("--epochs", type=int, default=8, help="Training epochs of the model (default: 8).")
    parser.add_argument("--rounds", type=int, default=15, help="Interleaved latency rounds (default: 15).")
    parser.add_argument("--calls", type=int, default=50, help="Batch-1 calls per variant and round (default: 50).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of training and compress() (default: 0).")
    output_lib.add_output_arguments(parser, NAME)


def run(args):
    return output_lib.measure_and_publish(args, measure, render, name=NAME, title="A raw-text classifier in a LiteRT file")


def measure(args):
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_lowrank
    from keras_lowrank.benchmarks.environment import describe_machine
    from keras_lowrank.benchmarks.environment import load_average
    from keras_lowrank.export import TextRunner

    machine = describe_machine(("numpy", "tensorflow", "keras", "ai_edge_litert"))
    data = keras_lowrank.data.load_dataset(args.dataset)
    split = {name: (data.texts(name), np.asarray(data.labels(name))) for name in ("train", "dev", "test")}
    keras.utils.set_random_seed(args.seed)
    model = _classifier(split["train"][0], data.num_classes, args.embedding_dim, args.sequence_length)
    model.fit(tf.constant(split["train"][0]), split["train"][1], epochs=args.epochs, batch_size=64,
              validation_data=(tf.constant(split["dev"][0]), split["dev"][1]), verbose=2)
    print(f"compress(size={args.size:g}) ...", flush=True)
    start = time.perf_counter()
    small, report = keras_lowrank.compress(
        model, (tf.constant(split["train"][0]), split["train"][1]), (tf.constant(split["dev"][0]), split["dev"][1]),
        size=args.size, seed=args.seed, return_report=True, verbose=0,
    )
    compress_seconds = time.perf_counter() - start
    print(report, flush=True)
    models = {"full": model, "compressed": small}
    test_texts, test_labels = split["test"]
    work = tempfile.mkdtemp(prefix="export_text_")
    keras_files = {}
    for name, m in models.items():
        path = os.path.join(work, f"{name}.keras")
        m.save(path)
        keras_files[name] = {"bytes": os.path.getsize(path),
                             "weights_bytes": int(sum(np.asarray(w).nbytes for w in m.get_weights()))}
    keras_outputs = {name: keras.ops.convert_to_numpy(m.predict(tf.constant(test_texts), verbose=0))
                     for name, m in models.items()}
    rows, runners = [], {}
    for key, label, source, quantize in VARIANTS:
        path = os.path.join(work, f"{key}.tflite")
        export = keras_lowrank.export_tflite(models[source], path, quantize=quantize)
        runner = TextRunner(path, num_threads=1)
        runners[key] = runner
        got = np.concatenate([runner([text]) for text in test_texts])
        expected = keras_outputs[source]
        rows.append({
            "variant": key, "label": label.format(size=args.size), "bytes": export.bytes,
            "test_accuracy": float(np.mean(got.argmax(-1) == test_labels)),
            "keras_test_accuracy": float(np.mean(expected.argmax(-1) == test_labels)),
            "same_class": int(np.sum(got.argmax(-1) == expected.argmax(-1))),
            "texts": len(test_texts),
            "max_abs_difference": float(np.max(np.abs(got - expected))),
            "export_probe_difference": export.max_abs_difference,
        })
        print(f"{key}: {export.bytes:,} bytes", flush=True)
    latency = _interleaved(runners, test_texts, args.rounds, args.calls, args.seed)
    tokenize = _tokenize_seconds(runners[REFERENCE], test_texts, args.calls * args.rounds)
    for row in rows:
        samples = latency[row["variant"]]
        row["b1_ms"] = statistics.median(samples) * 1e3
        row["b1_ratio"] = statistics.median(
            s / r for s, r in zip(samples, latency[REFERENCE])
        )
    machine["load_average_after"] = load_average()
    options = [(flag, getattr(args, dest)) for flag, dest, default in (
        ("--dataset", "dataset", "snips"), ("--size", "size", 0.05), ("--embedding-dim", "embedding_dim", 64),
        ("--sequence-length", "sequence_length", 32), ("--epochs", "epochs", 8), ("--rounds", "rounds", 15),
        ("--calls", "calls", 50), ("--seed", "seed", 0)) if getattr(args, dest) != default]
    candidates = report.candidates
    return {
        "dataset": args.dataset, "size": args.size, "embedding_dim": args.embedding_dim,
        "sequence_length": args.sequence_length, "vocabulary": int(model.layers[1].vocabulary_size()),
        "seed": args.seed, "compress_seconds": compress_seconds,
        "chosen": next((c.description for c in candidates if c.recipe == report.recipe), None),
        "embedding_bytes": report.embedding_bytes, "input_embedding_bytes": report.float32_embedding_bytes,
        "model_bytes": report.model_bytes, "input_model_bytes": report.input_model_bytes,
        "keras_files": keras_files, "tokenize_ms": tokenize * 1e3, "rows": rows, "machine": machine,
        "command": output_lib.command(NAME, options, args),
    }


def _classifier(texts, classes, dim, length):
    import keras

    vectorizer = keras.layers.TextVectorization(output_sequence_length=length, name="vectorize")
    vectorizer.adapt(texts)
    text = keras.Input(shape=(), dtype="string", name="text")
    x = keras.layers.Embedding(vectorizer.vocabulary_size(), dim, mask_zero=True, name="embedding")(vectorizer(text))
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    model = keras.Model(text, keras.layers.Dense(classes, name="logits")(x))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _interleaved(runners, texts, rounds, calls, seed):
    """Seconds per batch-1 call from the string, per variant, one sample per round."""
    import random

    rng = random.Random(seed)
    sample = [texts[rng.randrange(len(texts))] for _ in range(calls)]
    samples = {key: [] for key in runners}
    for runner in runners.values():
        runner([sample[0]])  # warm up
    for _ in range(rounds):
        order = list(runners)
        rng.shuffle(order)
        for key in order:
            start = time.perf_counter()
            for text in sample:
                runners[key]([text])
            samples[key].append((time.perf_counter() - start) / calls)
    return samples


def _tokenize_seconds(runner, texts, calls):
    start = time.perf_counter()
    for i in range(calls):
        runner.tokenize([texts[i % len(texts)]])
    return (time.perf_counter() - start) / calls


def render(results, link_base="", heading_level=2):
    rows = results["rows"]
    lines = [
        f"A DAN holding its `TextVectorization` (vocabulary {results['vocabulary']:,}, d={results['embedding_dim']}, "
        f"length {results['sequence_length']}) trained on {results['dataset']}, compressed with "
        f"`compress(size={results['size']:g})` on its raw texts ({results['compress_seconds']:.0f} s; chose "
        f"{results['chosen']}: table {results['input_embedding_bytes']:,} -> {results['embedding_bytes']:,} bytes, "
        f"whole model {results['input_model_bytes']:,} -> {results['model_bytes']:,} bytes), and exported. Every "
        f"file is run on the {rows[0]['texts']:,} test texts through `TextRunner` (the reference tokenizer and the "
        "interpreter), one text at a time, and compared with the Keras model it came from. Batch-1 latency is from "
        f"the string (tokenizing alone: {results['tokenize_ms']:.3f} ms), one thread, the median over interleaved "
        "rounds; the ratio is taken per round against the uncompressed float32 file.",
        "",
        f"Command: `{results['command']}`",
        "",
        "| file | bytes | vs uncompressed float32 | test accuracy (file) | test accuracy (Keras) | same class as Keras "
        "| max abs logit difference | batch-1 ms | latency vs float32 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    reference = next(row for row in rows if row["variant"] == REFERENCE)
    for row in rows:
        lines.append(
            f"| {row['label']} | {row['bytes']:,} | {row['bytes'] / reference['bytes']:.1%} | "
            f"{row['test_accuracy']:.2%} | {row['keras_test_accuracy']:.2%} | {row['same_class']}/{row['texts']} | "
            f"{row['max_abs_difference']:.2g} | {row['b1_ms']:.3f} | {row['b1_ratio']:.2f} |"
        )
    files = results["keras_files"]
    lines += [
        "",
        "The `.keras` files (`model.save()`): "
        + "; ".join(f"{name} {f['bytes']:,} bytes for {f['weights_bytes']:,} bytes of weights"
                    for name, f in files.items())
        + ". The uncompressed model's file also holds the Adam state of its own training (Keras saves a "
        "compiled model's optimizer); compress() returns a model with a fresh, unbuilt optimizer, so its file "
        "holds the weights, the vocabulary and the config.",
        "",
        f"Machine: {machine_summary(results['machine'])}",
        "",
        f"Raw numbers: [results.json]({output_lib.link(link_base, 'results.json')}).",
    ]
    return "\n".join(lines)
