"""`keras-lowrank bench compress-time`: compress() wall time, this checkout against another.

Trains one of the paper's classifiers (the DAN by default, or the CNN) once
on a bundled dataset (GloVe 6B 50-d, the reproduction's settings), saves it
and its splits, then times
`keras_lowrank.compress(model, train, dev, size=...)` at its defaults in
fresh processes, alternating between this checkout and a reference checkout
(`--reference`, e.g. `git worktree add /tmp/before <commit>`), so that both
see the same model, data and load. Writes `results.json` (every run: wall
seconds, recipes tried, epochs trained in all, chosen recipe, dev score) and
`results.md` (medians and their ratio).

This module uses the public API only; the reference checkout is imported in
its own process through `PYTHONPATH`.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from keras_lowrank.benchmarks import output as output_lib
from keras_lowrank.benchmarks.environment import machine_summary

NAME = "compress_time"
NAME_CLI = "compress-time"
MODELS = ("dan", "cnn")

_RUN = r"""
import json, os, sys, time
import numpy as np
import keras
import keras_lowrank
data = np.load(sys.argv[2])
model = keras.saving.load_model(sys.argv[1])
start = time.perf_counter()
small, report = keras_lowrank.compress(
    model, (data["x_train"], data["y_train"]), (data["x_dev"], data["y_dev"]), size=float(sys.argv[3]),
    seed=0, verbose=0, return_report=True)
seconds = time.perf_counter() - start
candidates = report.candidates
print("RESULT " + json.dumps({
    "seconds": seconds,
    "recipes": len(candidates),
    "epochs_trained": sum(getattr(c, "epochs", None) or 0 for c in candidates) or None,
    "chosen": next(c.description for c in candidates if c.recipe == report.recipe),
    "dev_score": report.score,
    "embedding_bytes": report.embedding_bytes,
    "keras_lowrank": os.path.dirname(keras_lowrank.__file__),
}))
"""


def add_arguments(parser):
    parser.add_argument("--dataset", default="snips", help="Bundled dataset (default: snips).")
    parser.add_argument("--model", default="dan", choices=MODELS,
                        help="The paper's classifier to compress (default: dan; cnn: a model whose steps cost "
                             "more, so that training outweighs the search's fixed cost per recipe).")
    parser.add_argument("--size", type=float, default=0.05, help="compress() size (default: 0.05).")
    parser.add_argument("--reference", required=False,
                        help="Root of another keras_lowrank checkout to time against (its folder holds keras_lowrank/).")
    parser.add_argument("--rounds", type=int, default=2, help="Interleaved rounds (default: 2).")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow and BLAS threads (default: 1).")
    output_lib.add_output_arguments(parser, NAME_CLI)


def run(args):
    return output_lib.measure_and_publish(args, measure, render, name=NAME_CLI, title="compress() wall time")


def measure(args):
    from keras_lowrank.benchmarks.environment import describe_machine
    from keras_lowrank.benchmarks.environment import load_average

    work = tempfile.mkdtemp(prefix="compress_time_")
    model_path, data_path = _train(args.dataset, args.model, work)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    versions = {"this checkout": here}
    if args.reference:
        versions["reference"] = os.path.abspath(args.reference)
    machine = describe_machine(("numpy", "tensorflow", "keras"))
    runs = []
    for round_index in range(args.rounds):
        for label, root in versions.items():
            env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3",
                       OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
                       TF_NUM_INTRAOP_THREADS=str(args.threads), TF_NUM_INTEROP_THREADS=str(args.threads))
            completed = subprocess.run(
                [sys.executable, "-c", _RUN, model_path, data_path, str(args.size)],
                env=env, cwd=work, capture_output=True, text=True, check=False,
            )
            line = next((l for l in completed.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                raise RuntimeError(f"compress() failed in {label}: {completed.stderr[-2000:]}")
            record = json.loads(line[len("RESULT "):])
            record.update(version=label, round=round_index)
            print(f"round {round_index + 1}, {label}: {record['seconds']:.1f} s, {record['recipes']} recipes, "
                  f"chose {record['chosen']}", flush=True)
            runs.append(record)
    machine["load_average_after"] = load_average()
    options = [("--dataset", args.dataset), ("--model", None if args.model == "dan" else args.model),
               ("--size", args.size), ("--reference", args.reference),
               ("--rounds", args.rounds), ("--threads", args.threads)]
    return {"dataset": args.dataset, "model": args.model, "vectors": "glove50", "size": args.size,
            "threads": args.threads, "machine": machine,
            "reference": args.reference, "reference_commit": _commit(args.reference),
            "command": output_lib.command(NAME_CLI, [(f, v) for f, v in options if v is not None], args),
            "runs": runs}


def _train(dataset, model_name, work):
    import keras
    import numpy as np

    from keras_lowrank.benchmarks.reproduce.fitting import fit_with_dev_selection
    from keras_lowrank.benchmarks.reproduce.tasks import build_model
    from keras_lowrank.benchmarks.reproduce.tasks import prepare_task

    task = prepare_task(dataset, "glove50", sequence_length=40)
    keras.utils.set_random_seed(0)
    model = build_model(task, model_name)
    fit_with_dev_selection(model, task.train, task.dev, epochs=12, learning_rate=3e-3, batch_size=64)
    model.compile(keras.optimizers.Adam(), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model_path = os.path.join(work, "model.keras")
    data_path = os.path.join(work, "data.npz")
    model.save(model_path)
    np.savez(data_path, x_train=task.train[0], y_train=task.train[1], x_dev=task.dev[0], y_dev=task.dev[1])
    return model_path, data_path


def _commit(root):
    if not root:
        return None
    completed = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                               text=True, check=False)
    return completed.stdout.strip() or None


def render(results, link_base="", heading_level=2):
    by_version = {}
    for run in results["runs"]:
        by_version.setdefault(run["version"], []).append(run)
    reference = results.get("reference_commit")
    lines = [
        f"compress() at its defaults, size={results['size']:g}, on the trained "
        f"{results.get('model', 'dan').upper()} of {results['dataset']} "
        f"(GloVe 6B 50-d), {results['threads']} thread(s), a fresh process per run, the versions interleaved"
        + (f"; the reference is commit {reference}" if reference else "") + ".",
        "",
        f"Command: `{results['command']}`",
        "",
        "| version | runs | median seconds | recipes tried | epochs trained (all recipes) | chosen (last run) | dev score (last run) |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    medians = {}
    for version, runs in by_version.items():
        medians[version] = statistics.median(r["seconds"] for r in runs)
        last = runs[-1]
        epochs = last.get("epochs_trained")
        lines.append(
            f"| {version} | {len(runs)} | {medians[version]:.1f} | {last['recipes']} | "
            f"{'n/a' if epochs is None else f'{epochs:g}'} | {last['chosen']} | {last['dev_score']:.4f} |"
        )
    if "reference" in medians:
        ratio = medians["this checkout"] / medians["reference"]
        lines += ["", f"Time ratio (this checkout / reference, medians): {ratio:.2f}."]
    lines += ["", f"Machine: {machine_summary(results['machine'])}", "",
              f"Raw numbers: [results.json]({output_lib.link(link_base, 'results.json')})."]
    return "\n".join(lines)
