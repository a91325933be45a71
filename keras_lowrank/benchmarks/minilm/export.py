"""The compressed all-MiniLM-L6-v2 classifier in LiteRT: size, parity, latency.

Builds the classifier fine-tuned by a classifier part (its cached weights),
factorizes its token table at shares of the float32 table bytes (float32
factors, not fine-tuned: this part measures the file, not accuracy), and exports
the uncompressed and each compressed model with `keras_lowrank.export_tflite`
in float32 and with dynamic-range quantization. The exported function takes
token ids only (`[1, sequence_length]`, zero-padded): segment ids are zeros
and the padding mask is `ids != 0`, as for one text. For each file: size,
builtin ops only (the export refuses anything else), the largest logit gap to
Keras on probe texts, agreement of the predicted classes on the test texts,
and batch-1 latency (median of interleaved rounds, one thread).
"""

import os
import shutil
import statistics
import tempfile
import time

import numpy as np

from keras_lowrank.benchmarks.minilm import pretrained

DEFAULTS = {
    "dataset": "snips",
    "sizes": (0.10, 0.05),
    "sequence_length": 32,
    "probe_texts": 64,
    "latency_rounds": 7,
    "latency_calls": 30,
}


def run_part(output, *, source=None, seed=0, cache=None, **settings):
    """Exports and measures; writes `output/results.json` and returns it."""
    import keras

    from keras_lowrank import export_tflite
    from keras_lowrank.benchmarks import environment
    from keras_lowrank.benchmarks import output as output_lib
    from keras_lowrank.benchmarks.minilm import classifier
    from keras_lowrank.export.keras_hub_task import split_task
    from keras_lowrank.export.tflite import invoke
    from keras_lowrank.export.tflite import make_interpreter
    from keras_lowrank.export.tflite import prepare_interpreter
    from keras_lowrank.surgery import factorize_embeddings

    config = {**DEFAULTS, **settings}
    os.makedirs(output, exist_ok=True)
    machine = environment.describe_machine(("numpy", "tensorflow", "keras", "keras_hub", "ai_edge_litert"))
    dataset = config["dataset"]
    weights = os.path.join(cache or pretrained.default_runs_dir(), f"{dataset}_s{seed}.weights.h5")
    if not os.path.isfile(weights):
        raise ValueError(
            f"The export part needs the fine-tuned weights of a classifier part: {weights} is missing; "
            f"run `keras-lowrank bench minilm --part classifier --dataset {dataset} --seed {seed}` first."
        )
    folder = pretrained.model_folder(source)
    data = classifier.load_splits(dataset, seed, folder, {**classifier.DEFAULTS, "sequence_length": config["sequence_length"]})
    base = classifier.build_classifier(folder, data["num_classes"])
    base.load_weights(weights)

    ids_test = data["test"][0]["token_ids"].astype("int32")
    probe = ids_test[: config["probe_texts"]]
    models = {"uncompressed": (None, base)}
    for size in config["sizes"]:
        models[f"low rank {size:.0%}"] = (size, factorize_embeddings(base, compression=1.0 - size,
                                                                    layer_names="token_embedding"))
    results = {"benchmark": "minilm_export", "dataset": dataset, "seed": seed,
               "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
               "rows": []}
    interpreters = {}
    # The files are tens of MB: their numbers are the result, not the files.
    scratch = tempfile.mkdtemp(prefix="minilm-export-")
    for name, (size, model) in models.items():
        # What the file computes: the task on its ids, segments and mask derived.
        wrapped = split_task(model, config["sequence_length"]).ids_model
        keras_logits = np.asarray(wrapped.predict(ids_test, batch_size=64, verbose=0))
        for quantize in (None, "dynamic"):
            label = f"{name}, {'float32' if quantize is None else 'dynamic range'}"
            path = os.path.join(scratch, label.replace(" ", "_").replace(",", "").replace("%", "pct") + ".tflite")
            report = export_tflite(model, path, quantize=quantize, probe=probe, batch_size=1,
                                   sequence_length=config["sequence_length"])
            interpreter = make_interpreter(path, num_threads=1)
            prepare_interpreter(interpreter, (1, config["sequence_length"]))
            lite = np.concatenate([invoke(interpreter, ids_test[i : i + 1]) for i in range(len(ids_test))])
            results["rows"].append({
                "model": name, "size": size, "quantize": quantize or "float32",
                "file_bytes": os.path.getsize(path),
                "max_abs_logit_gap": float(np.max(np.abs(lite - keras_logits))),
                "class_agreement": float(np.mean(np.argmax(lite, -1) == np.argmax(keras_logits, -1))),
                "test_accuracy": float(np.mean(np.argmax(lite, -1) == data["test"][1])),
                "report": str(report),
            })
            interpreters[label] = interpreter
            os.remove(path)
    latency = interleaved_latency(interpreters, ids_test[:1], config["latency_rounds"], config["latency_calls"])
    for row in results["rows"]:
        label = f"{row['model']}, {'float32' if row['quantize'] == 'float32' else 'dynamic range'}"
        row["latency_ms_median"] = statistics.median(latency[label])
        row["latency_ms_rounds"] = latency[label]
    shutil.rmtree(scratch, ignore_errors=True)
    results["machine"] = output_lib.finish_machine(machine)
    output_lib.save_results(results, output)
    for row in results["rows"]:
        print(f"[export] {row['model']} {row['quantize']}: {row['file_bytes'] / 2**20:.1f} MiB, "
              f"{row['latency_ms_median']:.2f} ms, gap {row['max_abs_logit_gap']:.2e}", flush=True)
    return results



def interleaved_latency(interpreters, one, rounds, calls):
    """Batch-1 latency in ms of each interpreter: `{label: [per-round mean]}`.

    Rounds alternate the order of the files (forward, then backward), so a
    machine that slows down during the measurement slows every file alike.
    """
    from keras_lowrank.export.tflite import invoke

    latency = {label: [] for label in interpreters}
    for round_index in range(rounds):
        order = list(interpreters) if round_index % 2 == 0 else list(interpreters)[::-1]
        for label in order:
            interpreter = interpreters[label]
            invoke(interpreter, one)
            start = time.perf_counter()
            for _ in range(calls):
                invoke(interpreter, one)
            latency[label].append(1e3 * (time.perf_counter() - start) / calls)
    return latency
