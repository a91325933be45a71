"""The all-MiniLM-L6-v2 sentence encoder in LiteRT: the whole file, measured.

Exports the original encoder and the encoders `compress()` returned in an
encoder part (`encoder.py` saves them) as KerasHub `BertTextEmbedder` tasks
(mean pooling over the padding mask, L2-normalized: the benchmark's
`sentence_encoder`) with one `keras_lowrank.export_tflite` call each, in
float32 and with dynamic-range quantization (int8 weights of the dense
layers). The file takes token ids alone: the padding mask (`ids != pad`) and
the segment ids (0) are computed inside it, as the task's preprocessor
computes them for one text (so an app cannot feed a mismatched mask).

For each file: its bytes, the cosine between the file's embedding and the
Keras model's on the test texts (parity), the cosine to the *original*
Keras encoder (what an app sees), and batch-1 latency (median of
interleaved rounds, one thread).
"""

import os
import shutil
import statistics
import tempfile

import numpy as np

from keras_lowrank.benchmarks.minilm import pretrained

DEFAULTS = {
    "texts": 10000,
    "sizes": (0.10, 0.05, 0.02),
    "test_texts": 500,
    "sequence_length": 32,
    "latency_rounds": 7,
    "latency_calls": 30,
}


def run_part(output, *, source=None, cache=None, **settings):
    """Exports and measures; writes `output/results.json` and returns it."""
    import keras
    import keras_hub

    from keras_lowrank import export_tflite
    from keras_lowrank.benchmarks import environment
    from keras_lowrank.benchmarks import output as output_lib
    from keras_lowrank.benchmarks.minilm import encoder
    from keras_lowrank.benchmarks.minilm.export import interleaved_latency
    from keras_lowrank.export.tflite import invoke
    from keras_lowrank.export.tflite import make_interpreter
    from keras_lowrank.export.tflite import prepare_interpreter
    from keras_lowrank.models.minilm import minilm_tokenizer

    config = {**DEFAULTS, **settings}
    os.makedirs(output, exist_ok=True)
    machine = environment.describe_machine(("numpy", "tensorflow", "keras", "keras_hub", "ai_edge_litert"))
    folder = pretrained.model_folder(source)
    length = config["sequence_length"]
    backbone, _ = pretrained.load(folder, sequence_length=length)
    preprocessor = keras_hub.models.BertTextEmbedderPreprocessor(minilm_tokenizer(folder), sequence_length=length)

    def embedder(of):
        return keras_hub.models.BertTextEmbedder(of, preprocessor=preprocessor)

    saved = os.path.join(cache or pretrained.default_runs_dir(), f"encoder_{config['texts']}")
    models = {"original": (None, embedder(backbone))}
    for size in config["sizes"]:
        path = f"{saved}_{size:g}.keras"
        if not os.path.isfile(path):
            print(f"[encoder-export] {path} is missing: run the encoder part with --texts {config['texts']} "
                  "first; this size is skipped", flush=True)
            continue
        compressed = keras.saving.load_model(path, compile=False)
        models[f"compress() {size:.0%}"] = (size, embedder(encoder._backbone(compressed)))

    (_, _), (test, _) = encoder._texts({**encoder.DEFAULTS, "test_texts": config["test_texts"]}, 0)
    ids = np.asarray(preprocessor(test)["token_ids"], dtype="int32")
    reference = _unit(models["original"][1].predict(test, batch_size=64, verbose=0))
    results = {"benchmark": "minilm_encoder_export",
               "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}, "rows": []}
    interpreters = {}
    scratch = tempfile.mkdtemp(prefix="minilm-encoder-export-")
    try:
        for name, (size, model) in models.items():
            keras_vectors = _unit(model.predict(test, batch_size=64, verbose=0))
            for quantize in (None, "dynamic"):
                label = f"{name}, {'float32' if quantize is None else 'dynamic range'}"
                path = os.path.join(scratch, f"{len(interpreters)}.tflite")
                report = export_tflite(model, path, quantize=quantize, probe=test[:32], batch_size=1)
                interpreter = make_interpreter(path, num_threads=1)
                prepare_interpreter(interpreter, (1, length))
                lite = _unit(np.concatenate([invoke(interpreter, ids[i : i + 1]) for i in range(len(ids))]))
                parity = np.sum(lite * keras_vectors, axis=1)
                to_original = np.sum(lite * reference, axis=1)
                results["rows"].append({
                    "model": name, "size": size, "quantize": quantize or "float32",
                    "file_bytes": os.path.getsize(path),
                    "parity_min_cosine": float(np.min(parity)),
                    "mean_cosine_to_original": float(np.mean(to_original)),
                    "min_cosine_to_original": float(np.min(to_original)),
                    "report": str(report),
                })
                interpreters[label] = interpreter
                os.remove(path)
        latency = interleaved_latency(interpreters, ids[:1], config["latency_rounds"], config["latency_calls"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for row in results["rows"]:
        label = f"{row['model']}, {'float32' if row['quantize'] == 'float32' else 'dynamic range'}"
        row["latency_ms_median"] = statistics.median(latency[label])
        row["latency_ms_rounds"] = latency[label]
    results["texts"] = {"test": len(test)}
    results["machine"] = output_lib.finish_machine(machine)
    output_lib.save_results(results, output)
    for row in results["rows"]:
        print(f"[encoder-export] {row['model']} {row['quantize']}: {row['file_bytes'] / 2**20:.1f} MiB, "
              f"{row['latency_ms_median']:.2f} ms, cosine to original {row['mean_cosine_to_original']:.4f}, "
              f"parity min cosine {row['parity_min_cosine']:.6f}", flush=True)
    return results


def _unit(vectors):
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
