"""The all-MiniLM-L6-v2 text classifier, compressed every way, on one dataset and seed.

One *part* of the transformer measurements: `run_part` fine-tunes the
pretrained MiniLM as a `keras_hub.models.BertTextClassifier` on one bundled
dataset (a seeded subsample of its training split, said in the results), then
measures on the same test texts, choosing every epoch on dev only:

- `uncompressed`: the fine-tuned model (best dev epoch);
- `keras_int8`, `keras_int4`: Keras' own `quantize` of the token table alone;
- `online`: `factorize_embeddings` at a share of the float32 token-table bytes
  (float32 factors), then a plain fine-tune;
- `online_distill`: the same with the fine-tuned model as teacher (`Distiller`);
- `compress`: `keras_lowrank.compress()` at the same shares (every family:
  low rank, pruning + low rank, pruning; pruned ids share `[UNK]`'s row);
- `compress_whole_vocabulary`: `compress(prune=False)`, low rank only;
- `uncompressed_finetune`: the control, the uncompressed model given the same
  distilled fine-tune as the compressed ones.

Every method's row lands in `results.json` as soon as it is measured, so a
stopped run keeps what it finished and a rerun skips it. A part run with
other training texts, fine-tune epochs or candidates than `DEFAULTS` has a
folder of its own (`part_folder`), and a part refuses to add rows measured
with another config than the one its `results.json` records.
"""

import os
import time

import numpy as np

from keras_lowrank.benchmarks.minilm import pretrained
from keras_lowrank.benchmarks.minilm import report

METHODS = (
    "uncompressed",
    "keras_int8",
    "keras_int4",
    "online",
    "online_distill",
    "compress",
    "compress_whole_vocabulary",
    "compress_whole_model",
    "uncompressed_finetune",
)
DEFAULTS = {
    "train_size": 600,
    "dev_size": 300,
    "test_size": 700,
    "sequence_length": 32,
    "batch_size": 32,
    "epochs": 3,
    "finetune_epochs": 1,
    "learning_rate": 5e-5,
    "finetune_learning_rate": 1e-4,
    "online_sizes": (0.10, 0.05, 0.02),
    "sizes": (0.10, 0.05),
    # One fine-tuned candidate per family (low rank, pruned + low rank, pruned).
    "candidates": 3,
    # `compress(max_model_bytes=...)`: this share of the whole float32
    # classifier, the other layers allowed Keras' int8 or int4.
    "whole_model_share": 0.10,
    "whole_model_candidates": 6,
}
# The settings that change every row of a part, with the word that names a
# non-default value in the part's folder (`classifier_snips_s0_3000texts_2epochs`).
FOLDER_SETTINGS = (("train_size", "texts"), ("finetune_epochs", "epochs"), ("candidates", "candidates"))
# Settings that only add rows (rows are keyed by method and size): a rerun
# may ask for other sizes in the same part.
_ROW_KEYED = ("sizes", "online_sizes")


def part_folder(dataset, seed, **settings):
    """The folder name of a classifier part: `classifier_D_sS`, plus its non-default settings.

    Rows measured with other training texts, fine-tune epochs or candidates
    than `DEFAULTS` do not compare with the default part's, so they get a
    folder of their own, e.g. `classifier_snips_s0_3000texts_2epochs`; the
    other settings (sizes, methods) leave the name as it is.

    Args:
        dataset: a bundled dataset name.
        seed: the part's seed.
        **settings: overrides of `DEFAULTS` (those outside `FOLDER_SETTINGS`
            are ignored).

    Returns:
        The folder name, without the results root.
    """
    name = f"classifier_{dataset}_s{seed}"
    for key, word in FOLDER_SETTINGS:
        value = settings.get(key)
        if value is not None and value != DEFAULTS[key]:
            name += f"_{value}{word}"
    return name


def base_weights_name(dataset, seed, train_size=DEFAULTS["train_size"]):
    """The file name of the fine-tuned uncompressed classifier's cached weights.

    The default training size keeps the name parts and the export part have
    always used (`snips_s0.weights.h5`), so existing caches stay valid;
    another size names its texts (`snips_s0_3000texts.weights.h5`), so a
    base fine-tuned on other texts is never reused.
    """
    suffix = "" if train_size == DEFAULTS["train_size"] else f"_{train_size}texts"
    return f"{dataset}_s{seed}{suffix}.weights.h5"


def run_part(dataset, seed, output, *, source=None, cache=None, methods=METHODS, **settings):
    """Measures every method on `dataset` with `seed`; writes `output/results.json`.

    Args:
        dataset: a bundled dataset name ("snips", "trec", "sst2", ...).
        seed: seeds the subsample, the classifier head, dropout and shuffling.
        output: the part's results folder.
        source: where all-MiniLM-L6-v2 is (see `pretrained.model_folder`).
        cache: folder for the fine-tuned weights, reused by a rerun and by
            the export part (default `pretrained.default_runs_dir()`).
        methods: the methods to run (default all of `METHODS`).
        **settings: overrides of `DEFAULTS`.

    Returns:
        The results dict (also written to `output/results.json`).
    """
    import keras

    from keras_lowrank.benchmarks import environment
    from keras_lowrank.benchmarks import output as output_lib

    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown settings {unknown}; valid: {sorted(DEFAULTS)}")
    bad = sorted(set(methods) - set(METHODS))
    if bad:
        raise ValueError(f"Unknown methods {bad}; valid: {list(METHODS)}")
    config = {**DEFAULTS, **settings}
    path = os.path.join(output, "results.json")
    results = report.read_part(path) or {
        "benchmark": "minilm_classifier",
        "dataset": dataset,
        "seed": seed,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "rows": [],
    }
    done = {(row["method"], row.get("size")) for row in results["rows"]}
    # Checked before the model loads: a part whose rows are all there is
    # rerun harmlessly, one that would gain rows of another config is refused.
    if set(_planned(methods, config)) - done:
        check_config(results["config"], config, path)
    _merge_config(results["config"], config)
    os.makedirs(output, exist_ok=True)
    started_rows = bool(results["rows"])
    machine = environment.describe_machine(("numpy", "tensorflow", "keras", "keras_hub"))

    folder = pretrained.model_folder(source)
    data = load_splits(dataset, seed, folder, config)
    results["examples"] = {split: int(len(data[split][1])) for split in ("train", "dev", "test")}
    results["examples_available"] = data["available"]
    cache = cache or pretrained.default_runs_dir()
    os.makedirs(cache, exist_ok=True)

    def record(row):
        results["rows"] = [
            r for r in results["rows"] if (r["method"], r.get("size")) != (row["method"], row.get("size"))
        ] + [row]
        finished = output_lib.finish_machine(dict(machine))
        if started_rows and results.get("machine", {}).get("cpu") not in (None, finished["cpu"]):
            # A row added later on another machine says so; the part keeps its own.
            row["machine"] = finished
        else:
            results["machine"] = finished
        output_lib.write_progress(results, output)
        print(f"[{dataset} seed {seed}] {row['method']}"
              + (f" {row['size']:.0%}" if row.get("size") else "")
              + f": test {row['test_accuracy']:.4f} dev {row['dev_accuracy']:.4f} "
              f"table {row['table_bytes']:,} B ({row['seconds']:.0f} s)", flush=True)

    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    weights_path = os.path.join(cache, base_weights_name(dataset, seed, config["train_size"]))
    base = _fine_tuned(data, folder, config, seed, weights_path)
    if ("uncompressed", None) not in done:
        record(_row("uncompressed", None, base, data, time.perf_counter() - start,
                    detail={"epochs": config["epochs"], "best_epoch": base.best_epoch}))
    elif base.best_epoch is not None:
        # Fine-tuned again (no cached weights): new rows must compare with the recorded ones.
        recorded = next(r for r in results["rows"] if r["method"] == "uncompressed")
        again = _row("uncompressed", None, base, data, 0.0)
        if (again["test_accuracy"], again["dev_accuracy"]) != (recorded["test_accuracy"], recorded["dev_accuracy"]):
            raise RuntimeError(
                f"The uncompressed model fine-tuned again scores test {again['test_accuracy']:.4f}, dev "
                f"{again['dev_accuracy']:.4f}, not the recorded {recorded['test_accuracy']:.4f}, "
                f"{recorded['dev_accuracy']:.4f}: rerun the part into a new --output")

    # The base's row is recorded above; every other planned row is measured here.
    for method, size in _planned(methods, config)[1:]:
        if (method, size) not in done:
            record(_MEASURES[method](base, data, size, config, seed))
    return results


def check_config(recorded, config, path):
    """Raises when `recorded` (a part's config) differs from the requested `config`.

    Sizes add rows and may differ; a setting the part predates (missing from
    `recorded`) is not compared.

    Args:
        recorded: the config in the part's `results.json`.
        config: the config now requested (`DEFAULTS` with the overrides).
        path: the part's `results.json`, named in the message.

    Raises:
        ValueError: naming every differing setting, recorded and requested.
    """
    differing = [
        f"{key}={recorded[key]!r} (requested {_jsonable(value)!r})"
        for key, value in config.items()
        if key not in _ROW_KEYED and key in recorded and recorded[key] != _jsonable(value)
    ]
    if differing:
        # One line, for the CLI: mixing the rows would put numbers of two
        # configs in one table under one config's description.
        raise ValueError(
            f"{path} was measured with {', '.join(differing)}: its rows would not compare with "
            "new ones; measure into another --output"
        )


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _merge_config(recorded, config):
    """Records settings added since the part began, and every size asked of the part."""
    for key, value in config.items():
        recorded.setdefault(key, _jsonable(value))
    for key in _ROW_KEYED:
        recorded[key] = sorted(set(recorded[key]) | set(config[key]), reverse=True)


def _planned(methods, config):
    """The `(method, size)` rows a run with `methods` and `config` measures, in the order it measures them.

    The base model's `("uncompressed", None)` row is always first; every
    other row is measured by `_MEASURES[method]`.
    """
    planned = [("uncompressed", None)]
    planned += [(name, None) for name in ("keras_int8", "keras_int4") if name in methods]
    planned += [("online", size) for size in config["online_sizes"] if "online" in methods]
    planned += [("online_distill", size) for size in config["sizes"] if "online_distill" in methods]
    planned += [(name, size) for size in config["sizes"]
                for name in ("compress", "compress_whole_vocabulary") if name in methods]
    planned += [(name, None) for name in ("compress_whole_model", "uncompressed_finetune") if name in methods]
    return planned


def load_splits(dataset, seed, folder, config):
    """The tokenized train/dev/test subsamples of a bundled dataset for `seed`.

    Args:
        dataset: a bundled dataset name.
        seed: seeds the train and dev subsamples; the test texts are the
            same for every seed.
        folder: the unpacked all-MiniLM-L6-v2 folder (its tokenizer).
        config: needs `train_size`, `dev_size`, `test_size` (0 or None:
            the whole split) and `sequence_length`.

    Returns:
        A dict: `"train"`, `"dev"`, `"test"` as `(inputs, labels)` with the
        preprocessor's input dicts, `"num_classes"`, `"oov_id"` (the id of
        the tokenizer's unknown token) and `"available"` (the size of each
        whole split).
    """
    from keras_lowrank.data import load_dataset

    source = load_dataset(dataset)
    rng = np.random.default_rng(seed)
    data = {"available": {}}
    _, preprocessor = pretrained.load(folder, sequence_length=config["sequence_length"])
    for split, limit in (("train", config["train_size"]), ("dev", config["dev_size"]),
                         ("test", config["test_size"])):
        texts, labels = source.texts(split), np.asarray(source.labels(split))
        data["available"][split] = len(texts)
        # Test texts are the same for every seed (the first `test_size` of a
        # fixed shuffle); train and dev subsamples change with the seed.
        order = (np.random.default_rng(0) if split == "test" else rng).permutation(len(texts))
        keep = np.sort(order[:limit]) if limit and limit < len(texts) else np.arange(len(texts))
        data[split] = (pretrained.tokenize(preprocessor, [texts[i] for i in keep]), labels[keep])
    data["num_classes"] = source.num_classes
    tokenizer = preprocessor.tokenizer
    data["oov_id"] = int(tokenizer.token_to_id(tokenizer.oov_token))
    return data


def build_classifier(folder, num_classes):
    """A `BertTextClassifier` on the pretrained backbone, without preprocessor."""
    import keras_hub

    backbone, _ = pretrained.load(folder)
    return keras_hub.models.BertTextClassifier(backbone, num_classes=num_classes, preprocessor=None)


def _compile(model, learning_rate):
    import keras

    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        # XLA's compile of a BERT step costs more here than it saves over
        # the few hundred steps a part runs.
        jit_compile=False,
    )


def _fine_tuned(data, folder, config, seed, weights_path):
    model = build_classifier(folder, data["num_classes"])
    _compile(model, config["learning_rate"])
    if os.path.isfile(weights_path):
        model.load_weights(weights_path)
        model.best_epoch = None
        return model
    model.best_epoch = _fit_best_on_dev(model, model, data, config["epochs"], config, seed)
    from keras_lowrank.utils.atomic_write import atomic_path

    with atomic_path(weights_path) as temporary:
        model.save_weights(temporary)
    return model


def _fit_best_on_dev(trained, scored, data, epochs, config, seed):
    """Fits `trained` for `epochs`, keeps `scored`'s weights of the best dev epoch."""
    import keras

    best = {"accuracy": -1.0, "epoch": 0, "weights": scored.get_weights()}

    class BestOnDev(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            accuracy = _accuracy(scored, *data["dev"])
            if accuracy > best["accuracy"]:
                best.update(accuracy=accuracy, epoch=epoch + 1, weights=scored.get_weights())

    keras.utils.set_random_seed(seed)
    x, y = data["train"]
    trained.fit(x, y, batch_size=config["batch_size"], epochs=epochs, shuffle=True, verbose=0,
                callbacks=[BestOnDev()])
    scored.set_weights(best["weights"])
    return best["epoch"]


def _schedule(config, steps):
    import keras

    peak = config["finetune_learning_rate"]
    return keras.optimizers.schedules.CosineDecayRestarts(peak, first_decay_steps=steps, alpha=0.01)


def _online(base, data, size, config, seed, *, distill):
    import keras

    from keras_lowrank.surgery import factorize_embeddings
    from keras_lowrank.training import Distiller

    start = time.perf_counter()
    small = factorize_embeddings(base, compression=1.0 - size, layer_names="token_embedding")
    steps = int(np.ceil(len(data["train"][1]) / config["batch_size"]))
    small.compile(
        optimizer=keras.optimizers.Adam(_schedule(config, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    before = _accuracy(small, *data["dev"])
    if distill:
        trainer = Distiller(small, base)
        trainer.compile(optimizer=keras.optimizers.Adam(_schedule(config, steps)), loss=small.loss,
                        jit_compile=False)
    else:
        trainer = small
    try:
        best_epoch = _fit_best_on_dev(trainer, small, data, config["finetune_epochs"], config, seed)
    finally:
        base.trainable = True
    layer = small.backbone.token_embedding
    return _row("online_distill" if distill else "online", size, small, data,
                time.perf_counter() - start,
                detail={"rank": int(layer.rank), "dev_accuracy_before_finetune": before,
                        "best_epoch": best_epoch})


def compressed_model(base, data, size, config, seed, *, candidates=None, prune=True):
    """`keras_lowrank.compress()` of the fine-tuned classifier, to a share of its table or of the whole model.

    The one call the `compress` rows, the `compress_whole_model` row and
    the whole-file part share, with the part's fine-tune epochs, batch size
    and seed.

    Args:
        base: the fine-tuned uncompressed classifier.
        data: `load_splits`' dict (train and dev splits, the unknown id).
        size: the share of the float32 token table's bytes, or `None`: the
            config's `whole_model_share` of the whole float32 model
            (`max_model_bytes`, Keras' int8 or int4 of the other layers
            allowed).
        config: the part's config (`finetune_epochs`, `batch_size`,
            `candidates`; `whole_model_share` and `whole_model_candidates`
            when `size` is `None`).
        seed: the part's seed.
        candidates: compress()'s recipes (default the config's for that
            budget).
        prune: whether the vocabulary may be pruned.

    Returns:
        `(model, report, seconds, budget)`: the compressed classifier,
        compress()'s report, its wall time, and the whole-model budget in
        bytes (`None` for a table share).
    """
    import keras_lowrank
    from keras_lowrank.compression import table_bytes

    if size is None:
        budget = int(config["whole_model_share"] * table_bytes(base))
        target = {"max_model_bytes": budget, "other_layers": ("int8", "int4")}
        candidates = candidates or config["whole_model_candidates"]
    else:
        budget, target = None, {"size": size}
        candidates = candidates or config["candidates"]
    start = time.perf_counter()
    # The classifier holds no preprocessor (texts are tokenized once), so
    # the unknown token's id is passed.
    small, compress_report = keras_lowrank.compress(
        base, data["train"], data["dev"], **target, epochs=config["finetune_epochs"], candidates=candidates,
        batch_size=config["batch_size"], seed=seed, prune=prune, oov_id=data["oov_id"], return_report=True,
    )
    return small, compress_report, time.perf_counter() - start, budget


def _compressed(base, data, size, config, seed, *, prune):
    small, compress_report, seconds, _ = compressed_model(base, data, size, config, seed, prune=prune)
    return _row("compress" if prune else "compress_whole_vocabulary", size, small, data, seconds,
                detail={"recipe": compress_report.recipe, "report": compress_report.to_dict(),
                        "candidates": config["candidates"], "prune": prune})


def _keras_quantized(base, data, mode):
    """The base with Keras' own `quantize(mode)` of its token table alone."""
    from keras_lowrank.surgery import copy_model

    start = time.perf_counter()
    quantized = copy_model(base)
    quantized.backbone.token_embedding.quantize(mode)
    return _row(f"keras_{mode}", None, quantized, data, time.perf_counter() - start)


def _compressed_whole_model(base, data, config, seed):
    """compress() to a share of the whole float32 model, Keras' int8/int4 of the other layers allowed."""
    small, report, seconds, budget = compressed_model(base, data, None, config, seed)
    return _row("compress_whole_model", None, small, data, seconds,
                detail={"recipe": report.recipe, "report": report.to_dict(), "other_layers": report.other_layers,
                        "candidates": config["whole_model_candidates"], "model_budget": budget,
                        "whole_model_share": config["whole_model_share"]})


def _control(base, data, config, seed):
    import keras

    from keras_lowrank.surgery import copy_model
    from keras_lowrank.training import Distiller

    start = time.perf_counter()
    student = copy_model(base)
    steps = int(np.ceil(len(data["train"][1]) / config["batch_size"]))
    trainer = Distiller(student, base)
    trainer.compile(optimizer=keras.optimizers.Adam(_schedule(config, steps)), loss=base.loss,
                    jit_compile=False)
    try:
        best_epoch = _fit_best_on_dev(trainer, student, data, config["finetune_epochs"], config, seed)
    finally:
        base.trainable = True
    return _row("uncompressed_finetune", None, student, data, time.perf_counter() - start,
                detail={"best_epoch": best_epoch})


def _accuracy(model, x, y):
    logits = model.predict(x, batch_size=64, verbose=0)
    return float(np.mean(np.argmax(np.asarray(logits), axis=-1) == y))


def _row(method, size, model, data, seconds, detail=None):
    from keras_lowrank.compression import table_bytes

    layer = model.backbone.token_embedding
    return {
        "method": method,
        "size": size,
        "test_accuracy": _accuracy(model, *data["test"]),
        "dev_accuracy": _accuracy(model, *data["dev"]),
        "table_bytes": int(table_bytes(layer)),
        "float32_table_bytes": 4 * int(layer.input_dim) * int(layer.output_dim),
        "model_bytes": int(table_bytes(model)),
        "model_parameters": int(model.count_params()),
        "layer": type(layer).__name__,
        "seconds": seconds,
        "detail": detail or {},
    }


# How each method's row is measured: `(base, data, size, config, seed) -> row`.
_MEASURES = {
    "keras_int8": lambda base, data, size, config, seed: _keras_quantized(base, data, "int8"),
    "keras_int4": lambda base, data, size, config, seed: _keras_quantized(base, data, "int4"),
    "online": lambda base, data, size, config, seed: _online(base, data, size, config, seed, distill=False),
    "online_distill": lambda base, data, size, config, seed: _online(base, data, size, config, seed, distill=True),
    "compress": lambda base, data, size, config, seed: _compressed(base, data, size, config, seed, prune=True),
    "compress_whole_vocabulary": lambda base, data, size, config, seed: _compressed(
        base, data, size, config, seed, prune=False),
    "compress_whole_model": lambda base, data, size, config, seed: _compressed_whole_model(base, data, config, seed),
    "uncompressed_finetune": lambda base, data, size, config, seed: _control(base, data, config, seed),
}
