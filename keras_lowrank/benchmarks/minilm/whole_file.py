"""The whole all-MiniLM-L6-v2 classifier as a LiteRT file: what ships, and its accuracy.

One *part* per dataset and seed, on top of that dataset's classifier part
(`classifier_D_sS/`): the uncompressed classifier fine-tuned there (its
cached weights) and `keras_lowrank.compress()` of it at a share of the token
table (the same settings as the part's `compress` rows, run again here since
compressed models are not cached) or, with `method="compress_whole_model"`,
to a share of the whole float32 classifier with Keras' int8 or int4 of the
other layers allowed (the part's `compress_whole_model` row), each exported
by `export_tflite` as float32, LiteRT dynamic range (int8 weights) and int4
weights (AI Edge Quantizer). For each file: its size next to the uncompressed float32 file,
the test accuracy of the file itself (every test text through the
interpreter), its agreement with its Keras model, and batch-1 latency
(median of interleaved rounds, one thread). The control is the classifier
part's `uncompressed_finetune` row: the uncompressed model given the same
distilled fine-tune as the compressed ones.
"""

import os
import shutil
import statistics
import tempfile

import numpy as np

from keras_lowrank.benchmarks.minilm import pretrained
from keras_lowrank.benchmarks.minilm import report

# What compress() is given: a share of the token table (`"compress"`), or of
# the whole float32 classifier with Keras' int8/int4 of the other layers
# allowed (`"compress_whole_model"`, the classifier part's method names).
METHODS = ("compress", "compress_whole_model")
DEFAULTS = {
    "method": "compress",
    "size": 0.05,
    "whole_model_share": 0.10,
    # compress()'s recipes; `None`: the classifier part's (its compress rows').
    "candidates": None,
    "quantizations": (None, "dynamic", "int4"),
    "probe_texts": 64,
    "latency_rounds": 7,
    "latency_calls": 30,
    # The moonshot: a file at most this share of the uncompressed float32
    # file, within `moonshot_points` of the control's test accuracy.
    "moonshot_share": 0.10,
    "moonshot_points": 1.0,
}


def part_folder(dataset, seed, candidates=None, method="compress"):
    """`whole_file_D_sS`, then `_whole_model` for a whole-model budget and `_Ncandidates` when given."""
    return (f"whole_file_{dataset}_s{seed}" + ("_whole_model" if method == "compress_whole_model" else "")
            + (f"_{candidates}candidates" if candidates else ""))


def run_part(dataset, seed, output, *, root, source=None, cache=None, **settings):
    """Exports and measures the files of one dataset and seed; writes `output/results.json`.

    Args:
        dataset: a bundled dataset name whose classifier part exists.
        seed: the classifier part's seed.
        output: this part's results folder.
        root: the results root holding `classifier_D_sS/` (its config and
            control row are read).
        source: where all-MiniLM-L6-v2 is (see `pretrained.model_folder`).
        cache: the classifier parts' cache of fine-tuned weights.
        **settings: overrides of `DEFAULTS`.

    Returns:
        The results dict.
    """
    import keras

    from keras_lowrank import export_tflite
    from keras_lowrank.benchmarks import environment
    from keras_lowrank.benchmarks import output as output_lib
    from keras_lowrank.benchmarks.minilm import classifier
    from keras_lowrank.benchmarks.minilm.export import interleaved_latency
    from keras_lowrank.compression import table_bytes
    from keras_lowrank.export.keras_hub_task import split_task
    from keras_lowrank.export.tflite import invoke
    from keras_lowrank.export.tflite import make_interpreter
    from keras_lowrank.export.tflite import prepare_interpreter

    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown settings {unknown}; valid: {sorted(DEFAULTS)}")
    config = {**DEFAULTS, **settings}
    if config["method"] not in METHODS:
        raise ValueError(f"Expected `method` to be one of {METHODS}, received: method={config['method']!r}")
    part_path = os.path.join(root, classifier.part_folder(dataset, seed), "results.json")
    part = report.read_part(part_path)
    control = next((r for r in (part or {}).get("rows", []) if r["method"] == "uncompressed_finetune"), None)
    if control is None:
        raise ValueError(
            f"The whole-file part compares with the control of a classifier part: {part_path} has no "
            f"uncompressed_finetune row; run `keras-lowrank bench minilm --part classifier --dataset {dataset} "
            f"--seed {seed}` first."
        )
    part_config = {**classifier.DEFAULTS, **{k: v for k, v in part["config"].items() if k in classifier.DEFAULTS}}
    whole_model = config["method"] == "compress_whole_model"
    candidates = config["candidates"] or part_config["whole_model_candidates" if whole_model else "candidates"]
    weights = os.path.join(cache or pretrained.default_runs_dir(),
                           classifier.base_weights_name(dataset, seed, part_config["train_size"]))
    if not os.path.isfile(weights):
        raise ValueError(
            f"The whole-file part needs the fine-tuned weights of the classifier part: {weights} is missing; "
            f"run `keras-lowrank bench minilm --part classifier --dataset {dataset} --seed {seed}` first."
        )
    machine = environment.describe_machine(
        ("numpy", "tensorflow", "keras", "keras_hub", "ai_edge_litert", "ai_edge_quantizer"))
    folder = pretrained.model_folder(source)
    data = classifier.load_splits(dataset, seed, folder, part_config)
    base = classifier.build_classifier(folder, data["num_classes"])
    base.load_weights(weights)

    keras.utils.set_random_seed(seed)
    small, compress_report, compress_seconds, model_budget = classifier.compressed_model(
        base, data, None if whole_model else config["size"],
        {**part_config, "whole_model_share": config["whole_model_share"]}, seed, candidates=candidates)
    compressed_name = (f"compress to {config['whole_model_share']:.0%} of the model" if whole_model
                       else f"compress {config['size']:.0%}")
    length = part_config["sequence_length"]
    ids_test = data["test"][0]["token_ids"].astype("int32")
    labels = np.asarray(data["test"][1])
    models = {"uncompressed": base, compressed_name: small}
    results = {
        "benchmark": "minilm_whole_file", "dataset": dataset, "seed": seed,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "classifier_config": {k: list(v) if isinstance(v, tuple) else v for k, v in part_config.items()},
        "control_test_accuracy": control["test_accuracy"],
        "compress": {"recipe": compress_report.recipe, "seconds": compress_seconds, "candidates": candidates,
                     "table_bytes": compress_report.embedding_bytes, "budget_bytes": compress_report.budget_bytes,
                     "model_budget_bytes": model_budget, "other_layers": compress_report.other_layers,
                     "model_bytes": table_bytes(small)},
        "rows": [],
    }
    interpreters = {}
    # The files are tens of MB: their numbers are the result, not the files.
    scratch = tempfile.mkdtemp(prefix="minilm-whole-file-")
    try:
        for name, model in models.items():
            keras_logits = np.asarray(split_task(model, length).ids_model.predict(ids_test, batch_size=64, verbose=0))
            for quantize in config["quantizations"]:
                label = f"{name}, {quantize or 'float32'}"
                path = os.path.join(scratch, label.replace(" ", "_").replace(",", "").replace("%", "pct") + ".tflite")
                export_report = export_tflite(model, path, quantize=quantize, probe=ids_test[: config["probe_texts"]],
                                              batch_size=1, sequence_length=length)
                interpreter = make_interpreter(path, num_threads=1)
                prepare_interpreter(interpreter, (1, length))
                lite = np.concatenate([invoke(interpreter, ids_test[i : i + 1]) for i in range(len(ids_test))])
                results["rows"].append({
                    "model": name, "quantize": quantize or "float32", "file_bytes": os.path.getsize(path),
                    "keras_test_accuracy": float(np.mean(np.argmax(keras_logits, -1) == labels)),
                    "test_accuracy": float(np.mean(np.argmax(lite, -1) == labels)),
                    "class_agreement": float(np.mean(np.argmax(lite, -1) == np.argmax(keras_logits, -1))),
                    "max_abs_logit_gap": float(np.max(np.abs(lite - keras_logits))),
                    "ops": sorted(export_report.ops),
                })
                interpreters[label] = interpreter
                os.remove(path)
                print(f"[whole-file] {dataset} {label}: {results['rows'][-1]['file_bytes'] / 2**20:.1f} MiB, "
                      f"test {results['rows'][-1]['test_accuracy']:.4f}", flush=True)
        latency = interleaved_latency(interpreters, ids_test[:1], config["latency_rounds"], config["latency_calls"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for row in results["rows"]:
        row["latency_ms_rounds"] = latency[f"{row['model']}, {row['quantize']}"]
        row["latency_ms_median"] = statistics.median(row["latency_ms_rounds"])
    judge_rows(results["rows"], control["test_accuracy"], config)
    results["machine"] = output_lib.finish_machine(machine)
    output_lib.save_results(results, output)
    return results


def judge_rows(rows, control_accuracy, config):
    """Adds each file's share of the uncompressed float32 file, its points against the control, and the moonshot.

    Args:
        rows: the part's rows (one has `model="uncompressed"`,
            `quantize="float32"`: the reference file).
        control_accuracy: the control's test accuracy (a fraction).
        config: needs `moonshot_share` and `moonshot_points`.
    """
    reference = next(r["file_bytes"] for r in rows if r["model"] == "uncompressed" and r["quantize"] == "float32")
    for row in rows:
        row["file_share"] = row["file_bytes"] / reference
        row["points_vs_control"] = 100.0 * (row["test_accuracy"] - control_accuracy)
        row["moonshot"] = bool(row["file_share"] <= config["moonshot_share"]
                               and row["points_vs_control"] >= -config["moonshot_points"])

