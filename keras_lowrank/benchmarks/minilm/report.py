"""Renders the all-MiniLM-L6-v2 parts into one Markdown report.

Reads every part found under the results root (`classifier_*/results.json`,
`encoder/results.json`, `export/results.json`), measures nothing, and writes
`ROOT/results.md`; with `doc`, also the generated section of that page.
Classifier parts run with other settings (`classifier_D_sS_3000texts_2epochs`)
render in tables of their own, after the default parts'.
"""

import glob
import json
import os
import statistics

from keras_lowrank.benchmarks import environment
from keras_lowrank.benchmarks import markdown

COMMAND = "keras-lowrank bench minilm --output {root} --doc {doc}"
METHOD_NAMES = {
    "uncompressed": "uncompressed (fine-tuned)",
    "keras_int8": "Keras `quantize(\"int8\")` of the table",
    "keras_int4": "Keras `quantize(\"int4\")` of the table",
    "online": "online low rank (float32 factors), fine-tune",
    "online_distill": "online low rank + distillation",
    "compress": "`compress()`",
    "compress_whole_vocabulary": "`compress(prune=False)`: low rank of the whole vocabulary",
    "compress_whole_model": "`compress(max_model_bytes=10% of the model, other_layers=(\"int8\", \"int4\"))`",
    "uncompressed_finetune": "uncompressed + the same distilled fine-tune (control)",
}


# The methods whose loss the goals are checked for.
_SUMMARIZED = ("compress", "compress_whole_vocabulary", "online_distill", "online")


def publish(root, doc=None):
    """Writes `root/results.md` (and `doc`'s generated section); returns the text."""
    from keras_lowrank.utils.atomic_write import write_text

    text = render(root, link_base="")
    write_text(os.path.join(root, "results.md"), "# all-MiniLM-L6-v2 compressed\n\n" + text)
    if doc:
        link_base = os.path.relpath(root, os.path.dirname(os.path.abspath(doc)) or ".")
        markdown.update_page(doc, COMMAND.format(root=root, doc=doc), render(root, link_base=link_base + "/"))
    return text


def render(root, link_base=""):
    parts = [_classifier_section(root, link_base), _encoder_section(root, link_base),
             _encoder_export_section(root, link_base), _export_section(root, link_base),
             _whole_file_section(root, link_base)]
    return "\n".join(p for p in parts if p)


def read_part(path):
    """A part's `results.json` as a dict, or `None` when it does not exist yet."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _classifier_parts(root):
    """The classifier parts under `root`, grouped by their settings.

    Returns:
        A list of `(suffix, parts)`: the default parts (`classifier_D_sS`,
        suffix `""`) first, then each group of parts run with other settings
        (`classifier_D_sS_3000texts_2epochs`: suffix `"_3000texts_2epochs"`)
        by its training texts, fine-tune epochs and candidates; `parts` are
        `(folder, results)` pairs in folder order.
    """
    groups = {}
    for path in sorted(glob.glob(os.path.join(root, "classifier_*", "results.json"))):
        folder = os.path.basename(os.path.dirname(path))
        part = read_part(path)
        prefix = f"classifier_{part['dataset']}_s{part['seed']}"
        # The folder says the settings (see `classifier.part_folder`); one
        # renamed by hand is a group of its own rather than mixed into another.
        suffix = folder[len(prefix):] if folder.startswith(prefix) else "_" + folder
        groups.setdefault(suffix, []).append((folder, part))

    def order(item):
        suffix, parts = item
        config = parts[0][1]["config"]
        return (suffix != "", config.get("train_size") or 0, config.get("finetune_epochs") or 0,
                config.get("candidates") or 0, suffix)

    return sorted(groups.items(), key=order)


def _classifier_section(root, link_base):
    groups = _classifier_parts(root)
    sections = []
    for suffix, parts in groups:
        if suffix == "":
            sections.append(_default_classifier_section(parts, link_base))
        else:
            sections.append(_settings_classifier_section(suffix, parts, link_base))
    return "\n".join(sections)


def _default_classifier_section(parts, link_base):
    """The parts run with the default settings: one table per dataset."""
    lines = ["## Text classifier", ""]
    first = parts[0][1]
    config = first["config"]
    lines.append(
        f"MiniLM fine-tuned as a `keras_hub.models.BertTextClassifier` (sequence length "
        f"{config['sequence_length']}, batch {config['batch_size']}, AdamW {config['learning_rate']}, "
        f"best of {config['epochs']} epochs on dev). Compressed models get {config['finetune_epochs']} "
        f"epoch(s) of fine-tune (Adam, cosine restarts from {config['finetune_learning_rate']}), "
        f"the epoch kept on dev. Parameters count every weight (int8 and packed int4 included). Sizes are shares of the token table's float32 bytes "
        f"(30,522 x 384 x 4 = 46,881,792 B); the whole {first['dataset']} classifier is "
        f"{first['rows'][0]['model_bytes']:,} B as float32. Accuracy on the test texts, mean over seeds; Δ against the same seed's "
        f"uncompressed model, and against the control: the uncompressed model given the same distilled "
        f"fine-tune as the compressed ones (the extra training alone)."
    )
    lines.append("")
    return "\n".join(lines + _dataset_tables(parts, link_base))


def _settings_classifier_section(suffix, parts, link_base):
    """Parts run with other training texts, fine-tune epochs or candidates: tables of their own."""
    first = parts[0][1]
    config = first["config"]
    train = f"{config['train_size']:,}" if config.get("train_size") else "all"
    lines = [
        f"## Text classifier: {train} training texts, {config['finetune_epochs']} fine-tune epoch(s), "
        f"{config['candidates']} candidates",
        "",
        f"The classifier parts run with settings of their own, each in its own folder "
        f"(`classifier_D_sS{suffix}`), not averaged with the default parts: {train} training texts per "
        f"seed (the uncompressed model best of {config['epochs']} epochs on dev), {config['finetune_epochs']} "
        f"epoch(s) of fine-tune for the compressed models and the control, `compress()` choosing among "
        f"{config['candidates']} candidates. Columns as in the default tables: accuracy on the test texts, "
        f"mean over seeds, Δ against the same seed's uncompressed model and against the control.",
        "",
    ]
    return "\n".join(lines + _dataset_tables(parts, link_base))


def _dataset_tables(parts, link_base):
    """The lines of one table per dataset of `parts` (`(folder, results)` pairs), the goals, the machine."""
    by_dataset = {}
    folders = {}
    for folder, part in parts:
        by_dataset.setdefault(part["dataset"], []).append(part)
        folders[(part["dataset"], part["seed"])] = folder
    lines = []
    summary = []
    for dataset, runs in sorted(by_dataset.items()):
        seeds = sorted(r["seed"] for r in runs)
        examples = runs[0]["examples"]
        available = runs[0].get("examples_available", {})
        lines.append(f"### {dataset}")
        lines.append("")
        lines.append(
            f"Seeds {', '.join(map(str, seeds))}; training texts subsampled to {examples['train']:,} of "
            f"{available.get('train', '?'):,} per seed, dev {examples['dev']:,} of {available.get('dev', '?'):,}, "
            f"test {examples['test']:,} of {available.get('test', '?'):,} (the same texts for every seed)."
        )
        lines.append("")
        lines.append("| method | size | token table bytes | whole model bytes | parameters | test accuracy "
                     "| Δ | Δ vs control | seeds |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        keys = []
        for run in runs:
            for row in run["rows"]:
                key = (row["method"], row.get("size"))
                if key not in keys:
                    keys.append(key)
        order = {m: i for i, m in enumerate(METHOD_NAMES)}
        keys.sort(key=lambda k: (order.get(k[0], 99), -(k[1] or 1)))
        for method, size in keys:
            accuracies, deltas, table, whole, params, versus_control = [], [], [], [], [], []
            for run in runs:
                rows = {(r["method"], r.get("size")): r for r in run["rows"]}
                if (method, size) not in rows:
                    continue
                row = rows[(method, size)]
                accuracies.append(row["test_accuracy"])
                table.append(row["table_bytes"])
                whole.append(row["model_bytes"])
                params.append(row["model_parameters"])
                if ("uncompressed", None) in rows:
                    deltas.append(row["test_accuracy"] - rows[("uncompressed", None)]["test_accuracy"])
                if ("uncompressed_finetune", None) in rows:
                    versus_control.append(
                        row["test_accuracy"] - rows[("uncompressed_finetune", None)]["test_accuracy"]
                    )
            if not accuracies:
                continue
            fraction = statistics.mean(table) / runs[0]["rows"][0]["float32_table_bytes"]
            delta = statistics.mean(deltas) if deltas else float("nan")
            control = f"{100 * statistics.mean(versus_control):+.2f}" if versus_control else ""
            lines.append(
                f"| {METHOD_NAMES.get(method, method)} | {'' if size is None else f'{size:.0%}'} | "
                f"{statistics.mean(table):,.0f} ({fraction:.1%}) | {statistics.mean(whole):,.0f} | "
                f"{statistics.mean(params):,.0f} | {100 * statistics.mean(accuracies):.2f} | {100 * delta:+.2f} | {control} | {len(accuracies)} |"
            )
            if method in _SUMMARIZED and deltas:
                summary.append((dataset, method, size, fraction, 100 * delta, len(deltas),
                                100 * statistics.mean(versus_control) if versus_control else None))
        lines.append("")
        lines += _recipes(runs)
        for run in sorted(runs, key=lambda r: r["seed"]):
            for row in run["rows"]:
                if "machine" in row:
                    lines.append(f"- {METHOD_NAMES.get(row['method'], row['method'])}, seed {run['seed']}: measured "
                                 f"later, on {environment.machine_summary(row['machine'])}")
        for run in sorted(runs, key=lambda r: r["seed"]):
            lines.append(f"- seed {run['seed']}: [results.json]({link_base}{folders[(dataset, run['seed'])]}/results.json)")
        lines.append("")
    lines += _goals(summary)
    if len({part["machine"].get("cpu") for _, part in parts}) == 1:
        lines.append(f"Machine: {environment.machine_summary(parts[0][1]['machine'])}")
    else:
        # Parts measured on different processors: each says its own.
        lines += [f"- Machine of `{folder}`: {environment.machine_summary(part['machine'])}" for folder, part in parts]
    lines.append("")
    return lines


def _recipes(runs):
    """One line per `compress()` row: the recipe it chose, seed by seed."""
    lines = []
    for method in ("compress", "compress_whole_vocabulary", "compress_whole_model"):
        chosen = {}
        for run in sorted(runs, key=lambda r: r["seed"]):
            for row in run["rows"]:
                if row["method"] == method:
                    recipe = next(iter(row["detail"]["recipe"].values()))
                    other = row["detail"].get("other_layers")
                    chosen.setdefault(row["size"], []).append(
                        f"seed {run['seed']}: {_describe(recipe)}"
                        + (f", other layers Keras {other}" if other else "")
                        + (f" (best of {row['detail']['candidates']})" if "candidates" in row["detail"] else ""))
        for size in sorted(chosen, key=lambda s: -(s or 0)):
            at = f" at {size:.0%}" if size is not None else ""
            lines.append(f"- {METHOD_NAMES[method]}{at} chose " + "; ".join(chosen[size]))
    return lines


def _describe(recipe):
    from keras_lowrank.layers.table_layout import TableLayout

    text = TableLayout.from_dict(recipe["layout"]).describe()
    return text + (", frequency-weighted" if recipe.get("weighting") == "frequency" else "")


def _goals(summary):
    if not summary:
        return []
    lines = ["### Goals: <= 0.5 point lost at <= 10% of the table, <= 1 point at <= 5%", ""]
    for method in _SUMMARIZED:
        rows = [s for s in summary if s[1] == method]
        for size, limit in ((0.10, 0.5), (0.05, 1.0)):
            chosen = [s for s in rows if s[2] == size]
            if not chosen:
                continue
            worst = min(chosen, key=lambda s: s[4])
            met = all(round(s[4], 6) >= -limit for s in chosen)
            controls = [s for s in chosen if s[6] is not None]
            against = ""
            if controls:
                worst_control = min(controls, key=lambda s: s[6])
                against = (f"; against the control, worst {worst_control[6]:+.2f} ({worst_control[0]}), "
                           f"mean {statistics.mean(s[6] for s in controls):+.2f}")
            lines.append(
                f"- {METHOD_NAMES[method]} at {size:.0%}: worst Δ {worst[4]:+.2f} ({worst[0]}), "
                f"mean {statistics.mean(s[4] for s in chosen):+.2f} over {len(chosen)} dataset(s): "
                + ("met" if met else "not met") + against
            )
    lines.append("")
    return lines


def _encoder_folders(root):
    """The encoder parts under `root`: `encoder`, then `encoder_<N>texts` by N."""
    if not os.path.isdir(root):
        return []
    found = [name for name in os.listdir(root)
             if name == "encoder" or (name.startswith("encoder_") and name.endswith("texts")
                                      and name[len("encoder_"):-len("texts")].isdigit())]
    return sorted(found, key=lambda name: (name != "encoder", int(name[8:-5]) if name != "encoder" else 0))


def _encoder_section(root, link_base):
    folders = _encoder_folders(root)
    sections = [_encoder_part(root, folder, link_base) for folder in folders]
    sections.append(_encoder_time(root, folders))
    return "\n".join(section for section in sections if section)


def _encoder_time(root, folders):
    """compress()'s wall time on the encoder against the texts it was given, over the parts."""
    rows = []
    for folder in folders:
        results = read_part(os.path.join(root, folder, "results.json"))
        if results is None:
            continue
        config = results["config"]
        for row in results["rows"]:
            if row["method"] == "compress" and row.get("seconds") and row.get("fit_texts"):
                rows.append((row["size"], row["fit_texts"], row.get("validation_texts", 0),
                             row.get("epochs", config["epochs"]),
                             config.get("compress_candidates"), row["seconds"], row["mean_cosine"]))
    if len({r[1] for r in rows}) < 2:
        return ""
    lines = ["## compress() time on the encoder, by the texts given", "",
             "Every encoder part's `compress()` rows, on the same machine (other work ran beside some parts: "
             "their load averages are in each part's machine line). `min per 1,000 text passes` divides the wall "
             "time (k-means builds and scoring included) by the texts the search's fine-tunes pass over (its "
             "epochs summed over its recipes, `rung_plan`, times the texts), so parts of other settings compare.",
             "",
             "| size | texts fine-tuned on | scoring | epochs | recipes | wall time | min per 1,000 text passes "
             "| mean cosine |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    from keras_lowrank.compression import search

    for size, fit, held, epochs, candidates, seconds, cosine in sorted(rows, key=lambda r: (-r[0], r[1])):
        passes = fit * search.epoch_units(search.rung_plan(candidates, epochs)) if candidates else None
        per = "n/a" if not passes else f"{seconds / 60 / (passes / 1000):.2f}"
        lines.append(f"| {size:.0%} | {fit:,} | {held:,} | {epochs} | {candidates} | {seconds / 60:.1f} min | "
                     f"{per} | {cosine:.4f} |")
    lines.append("")
    return "\n".join(lines)


def _compress_epochs(results):
    """The fine-tune epochs of a part's compress() rows, per size where a rerun changed them."""
    default = results["config"]["epochs"]
    epochs = {row["size"]: row.get("epochs", default) for row in results["rows"] if row["method"] == "compress"}
    if len(set(epochs.values())) < 2:
        return f"{next(iter(epochs.values()), default)} epoch(s)"
    return ", ".join(f"{count} epoch(s) at {size:.0%}" for size, count in sorted(epochs.items(), reverse=True))


def _encoder_part(root, folder, link_base):
    results = read_part(os.path.join(root, folder, "results.json"))
    if results is None:
        return ""
    config = results["config"]
    title = "## Sentence encoder" + ("" if folder == "encoder" else f", {results['texts']['train']:,} texts")
    lines = [
        title, "",
        f"Mean-pooled, normalized MiniLM embeddings of {results['texts']['test']:,} test sentences "
        f"({', '.join(config['datasets'])}), compressed against the original: mean (and smallest) "
        f"cosine, nearest-neighbour agreement (same nearest other sentence) and the overlap of the "
        f"{config['neighbours']} nearest."
        + (f" Low-rank rows, distilled by hand: {config['epochs']} epoch(s) on "
           f"{results['texts']['train']:,} unlabeled training texts, Adam {config['learning_rate']}, "
           "mean squared error to the original's embedding."
           if any(row["method"].startswith("low_rank") for row in results["rows"]) else "")
        + f" `compress()` rows: the call itself on {results['texts']['train']:,} training texts without "
        "labels (the embedding objective: distilled on cosine for at most "
        f"{_compress_epochs(results)}, its search over every table kind with "
        f"{config.get('compress_candidates', 'n/a')} recipes, chosen on the mean cosine of "
        f"{config.get('validation_share', 0):.0%} of the training texts held out"
        # Parts measured since the search scores each recipe's start record its candidates.
        + ("; a recipe's start, before any fine-tune, competes too"
           if any("candidates" in row for row in results["rows"] if row["method"] == "compress") else "")
        + ")."
        + (" `MSE loss` rows: the same call fine-tuning on Keras' mean squared error to the original's "
           "vectors (`loss=\"mean_squared_error\"`) instead of the cosine distance, still chosen on the mean cosine."
           if any(row["method"] == "compress_mse" for row in results["rows"]) else ""),
        "",
        "| table | stage | token table bytes | mean cosine | min cosine | NN@1 agreement | NN@10 overlap "
        "| k-NN accuracy (Δ) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    original = results.get("knn_accuracy_original")
    # In the order of `encoder.METHODS`, then largest table first, whatever order a rerun wrote them in;
    # each compress() row next to its twin of another loss.
    from keras_lowrank.benchmarks.minilm.encoder import COMPRESS_LOSSES
    from keras_lowrank.benchmarks.minilm.encoder import METHODS

    def place(row):
        method = row["method"]
        if method not in METHODS:
            return (1, 0, 0, 0)
        group = METHODS.index("compress" if method in COMPRESS_LOSSES else method)
        return (0, group, -(row.get("size") or 0), METHODS.index(method))

    for row in sorted(results["rows"], key=place):
        if row["method"] in ("keras_int8", "keras_int4"):
            name = f"Keras {row['method'][-4:]}"
        elif row["method"] == "compress":
            name = f"compress() {row['size']:.0%}, no labels"
        elif row["method"] == "compress_mse":
            name = f"compress() {row['size']:.0%}, no labels, MSE loss"
        else:
            name = (f"low rank {row['size']:.0%}, " + ("int4" if row["method"] == "low_rank_int4" else "float32")
                    + f" factors (rank {row['rank']})")
        knn = row.get("knn_accuracy")
        knn = "n/a" if knn is None or original is None else f"{knn:.2%} ({100 * (knn - original):+.2f})"
        lines.append(
            f"| {name} | {row['stage']} | {row['table_bytes']:,} | {row['mean_cosine']:.4f} | "
            f"{row['min_cosine']:.4f} | {row['nn_agreement']:.3f} | {row['nn_overlap']:.3f} | {knn} |"
        )
    timed = [row for row in results["rows"] if row["method"] == "compress" and row.get("seconds")]
    if timed:
        fit = timed[0].get("fit_texts")
        lines += ["", "Wall time of `compress()` on the encoder"
                  + (f" ({fit:,} texts fine-tuned on, {timed[0].get('validation_texts', 0):,} scoring)" if fit else "")
                  + ": " + ", ".join(f"{row['size']:.0%}: {row['seconds'] / 60:.1f} min" for row in timed) + "."]
    goals = _encoder_goals(results["rows"], original)
    if goals:
        lines += ["", "Goals for `compress()` without labels: " + "; ".join(goals) + "."]
    if original is not None:
        lines += ["", f"k-NN accuracy: each test sentence takes the majority class of its {config['neighbours']} "
                  "most similar labelled training sentences of the same dataset, mean over the datasets; the "
                  f"original encoder scores {original:.2%}, Δ in points against it (n/a: rows measured before "
                  "this task was added)."]
    lines += ["", f"Raw numbers: [results.json]({link_base}{folder}/results.json). "
              f"Machine: {environment.machine_summary(results['machine'])}", ""]
    return "\n".join(lines)


# (size, what, threshold): the encoder's goals, checked on the compress() rows.
ENCODER_GOALS = ((0.10, "mean_cosine", 0.99), (0.10, "nn_overlap", 0.9), (0.05, "mean_cosine", 0.98),
                 (0.10, "knn_points", -0.5))


def _encoder_goals(rows, original):
    found = {round(row["size"], 6): row for row in rows if row["method"] == "compress"}
    goals = []
    for size, what, threshold in ENCODER_GOALS:
        row = found.get(round(size, 6))
        if row is None:
            continue
        if what == "knn_points":
            if original is None or row.get("knn_accuracy") is None:
                continue
            value, label = 100 * (row["knn_accuracy"] - original), "k-NN accuracy within 0.5 point"
            text = f"{value:+.2f} points"
        else:
            value = row[what]
            label = {"mean_cosine": f"mean cosine >= {threshold}", "nn_overlap": f"NN@10 overlap >= {threshold}"}[what]
            text = f"{value:.4f}"
        goals.append(f"{size:.0%} {label}: {text}, {'met' if value >= threshold else 'not met'}")
    return goals


def _encoder_export_section(root, link_base):
    results = read_part(os.path.join(root, "encoder_export", "results.json"))
    if results is None:
        return ""
    rows = results["rows"]
    base = {r["quantize"]: r for r in rows if r["model"] == "original"}
    config = results["config"]
    lines = [
        "## The sentence encoder as a LiteRT file", "",
        "The whole encoder (a KerasHub `BertTextEmbedder`: mean pooling over the padding mask, L2-normalized) "
        "exported with one `export_tflite` call: the file takes token ids alone and computes the padding mask "
        f"and segment ids itself. Compressed rows: the models `compress()` returned in the encoder part on "
        f"{config['texts']:,} texts. Cosines are over {results['texts']['test']:,} test sentences: parity is "
        "the file against its own Keras model (smallest cosine), fidelity the file against the original Keras "
        f"encoder. Latency: median of {config['latency_rounds']} interleaved rounds of "
        f"{config['latency_calls']} batch-1 calls, one thread.",
        "",
        "| model | weights | file | vs original float32 | mean cosine to original | min cosine to original "
        "| parity (min cosine) | batch-1 latency | vs original, same weights |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    reference = base.get("float32")
    for row in rows:
        same = base.get(row["quantize"])
        lines.append(
            f"| {row['model']} | {row['quantize']} | {row['file_bytes'] / 2**20:.1f} MiB | "
            + (f"{row['file_bytes'] / reference['file_bytes']:.1%}" if reference else "n/a")
            + f" | {row['mean_cosine_to_original']:.4f} | {row['min_cosine_to_original']:.4f} | "
            f"{row['parity_min_cosine']:.6f} | {row['latency_ms_median']:.2f} ms | "
            + (f"{row['latency_ms_median'] / same['latency_ms_median']:.2f}x" if same else "n/a") + " |"
        )
    lines += ["", f"Raw numbers: [results.json]({link_base}encoder_export/results.json). "
              f"Machine: {environment.machine_summary(results['machine'])}", ""]
    return "\n".join(lines)


def _export_section(root, link_base):
    results = read_part(os.path.join(root, "export", "results.json"))
    if results is None:
        return ""
    rows = results["rows"]
    base = {r["quantize"]: r for r in rows if r["model"] == "uncompressed"}
    lines = [
        "## LiteRT (TFLite)", "",
        f"The {results['dataset']} classifier (seed {results['seed']}) exported with `export_tflite` "
        "(builtin ops only, parity checked on probe texts), uncompressed and with its token table "
        "factorized (float32 factors, not fine-tuned: the file, not accuracy, is measured here); one "
        f"text of token ids per call. Largest logit gap and class agreement are against Keras on "
        f"the test texts. Latency "
        f"is the median of {results['config']['latency_rounds']} interleaved rounds of "
        f"{results['config']['latency_calls']} calls, one thread.",
        "",
        "| model | weights | file | batch-1 latency | vs uncompressed | largest logit gap | same class as Keras |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ref = base.get(row["quantize"])
        ratio = row["latency_ms_median"] / ref["latency_ms_median"] if ref else float("nan")
        lines.append(
            f"| {row['model']} | {row['quantize']} | {row['file_bytes'] / 2**20:.1f} MiB | "
            f"{row['latency_ms_median']:.2f} ms | {ratio:.2f}x | {row['max_abs_logit_gap']:.1e} | "
            f"{row['class_agreement']:.1%} |"
        )
    lines += ["", f"Raw numbers: [results.json]({link_base}export/results.json). "
              f"Machine: {environment.machine_summary(results['machine'])}", ""]
    return "\n".join(lines)


def _whole_file_section(root, link_base):
    paths = sorted(glob.glob(os.path.join(root, "whole_file_*", "results.json")))
    if not paths:
        return ""
    first = read_part(paths[0])
    config = first["config"]
    lines = [
        "## The whole classifier as a LiteRT file", "",
        "What ships: the whole classifier exported with `export_tflite` (builtin ops only, parity checked), "
        f"uncompressed and compressed by `compress()` at {config['size']:.0%} of its token table (the classifier "
        "part's settings, run again), each with float32 weights, LiteRT dynamic range (int8 weights) and "
        "`quantize=\"int4\"` (int4 weights of the fully connected ops, AI Edge Quantizer). Accuracy is the "
        "file's own, every test text through the interpreter; Δ is against the control (the uncompressed "
        "model given the same distilled fine-tune). Latency is the median of "
        f"{config['latency_rounds']} interleaved rounds of {config['latency_calls']} calls, one thread, one "
        f"text of token ids per call. Moonshot: a file <= {config['moonshot_share']:.0%} of the uncompressed "
        f"float32 file within {config['moonshot_points']:g} point of the control.",
    ]
    for path in paths:
        results = read_part(path)
        folder = os.path.basename(os.path.dirname(path))
        base = next(r for r in results["rows"] if r["model"] == "uncompressed" and r["quantize"] == "float32")
        compressed = results["compress"]
        whole_model = results["config"].get("method") == "compress_whole_model"
        lines += [
            "", f"### {results['dataset']} (seed {results['seed']}){_candidates_heading(folder)}"
            + (f", compress() to {results['config']['whole_model_share']:.0%} of the whole model" if whole_model
               else ""), "",
            f"Control: {100 * results['control_test_accuracy']:.2f}. `compress()` "
            + (f"({compressed['candidates']} candidates) " if compressed.get("candidates") else "")
            + "chose " + "; ".join(_describe(recipe) for recipe in compressed["recipe"].values())
            + (f", the other layers in {compressed['other_layers'] or 'float32'} (the model stores "
               f"{compressed['model_bytes'] / 2**20:.1f} MiB in Keras, budget "
               f"{compressed['model_budget_bytes'] / 2**20:.1f} MiB)" if whole_model else "")
            + f" ({compressed['seconds'] / 60:.0f} min).",
            "",
            "| model | weights | file | of float32 file | test accuracy (file) | Δ vs control | same class as Keras "
            "| batch-1 latency | vs uncompressed float32 | moonshot |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in results["rows"]:
            lines.append(
                f"| {row['model']} | {row['quantize']} | {row['file_bytes'] / 2**20:.1f} MiB | "
                f"{row['file_share']:.1%} | {100 * row['test_accuracy']:.2f} | {row['points_vs_control']:+.2f} | "
                f"{row['class_agreement']:.1%} | {row['latency_ms_median']:.2f} ms | "
                f"{row['latency_ms_median'] / base['latency_ms_median']:.2f}x | {'met' if row['moonshot'] else '-'} |"
            )
        lines += ["", f"Raw numbers: [results.json]({link_base}{folder}/results.json). "
                  f"Machine: {environment.machine_summary(results['machine'])}"]
    return "\n".join(lines) + "\n"


def _candidates_heading(folder):
    """`", 12 candidates"` for a whole-file part run with its own candidates, else `""`."""
    suffix = folder.rsplit("_", 1)[-1]
    return f", {suffix[: -len('candidates')]} candidates" if suffix.endswith("candidates") else ""

