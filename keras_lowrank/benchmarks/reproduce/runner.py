"""Runs a reproduction grid, one line of progress per run, into results.json.

The grid is datasets x vectors x models x seeds (a *cell*, which trains one
uncompressed model) x methods x sizes x schedules. Results are appended to
`results.json` after every run (atomically), so an interrupted grid loses at
most one run, and a run already recorded for the same configuration is
skipped: a long grid can be split into parts that share one output folder.
Trained uncompressed models are cached (weights files) so that later parts
do not retrain them. This module must not render tables or plots (see
`report`).
"""

import datetime
import json
import os
import sys
import time

from keras_lowrank.benchmarks.reproduce import methods as M
from keras_lowrank.benchmarks.reproduce.config import FINETUNED_METHODS
from keras_lowrank.benchmarks.reproduce.records import RECORD_FIELDS  # noqa: F401 - the results.json contract
from keras_lowrank.benchmarks.reproduce.records import RESULTS_FILE
from keras_lowrank.benchmarks.reproduce.records import dataset_name
from keras_lowrank.benchmarks.reproduce.records import load_records
from keras_lowrank.benchmarks.reproduce.records import record_key
from keras_lowrank.benchmarks.reproduce.records import save_records
from keras_lowrank.benchmarks.reproduce.config import FIXED_SIZE_METHODS
from keras_lowrank.benchmarks.reproduce.config import size_label
from keras_lowrank.utils.atomic_write import atomic_path
from keras_lowrank.utils.atomic_write import write_json

# Trained uncompressed models, shared by every part of a split grid; kept out
# of the results folder so that it never ends up next to the results.
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "keras_lowrank", "reproduce")

def _key(cell_id, method, size, schedule, config):
    dataset, vectors, model, seed = cell_id
    return (
        dataset_name(dataset),
        model,
        vectors,
        method,
        round(float(size), 6) if size is not None else "fixed",
        int(seed),
        schedule if method in FINETUNED_METHODS else "-",
        config.epochs,
        config.finetune_epochs,
        config.max_train,
    )


def _jobs(config):
    """Expands the per-cell jobs: (method, size or None, schedule or None)."""
    jobs = []
    for method in config.methods:
        if method in FIXED_SIZE_METHODS:
            jobs.append((method, None, None))
            continue
        for c in config.compressions:
            size = round(1.0 - c, 6)
            schedules = config.schedules if method in FINETUNED_METHODS else (None,)
            for schedule in schedules:
                jobs.append((method, size, schedule))
    return jobs


def _cells(config):
    for dataset in config.datasets:
        for vectors in config.vectors:
            for model in config.models:
                for seed in config.seeds:
                    yield (dataset, vectors, model, seed)


def _cache_path(config, cell_id):
    dataset, vectors, model, seed = cell_id
    folder = config.cache or DEFAULT_CACHE
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{dataset}-{vectors}")
    name = f"{safe}-{model}-s{seed}-e{config.epochs}-n{config.max_train or 'all'}.weights.h5"
    return os.path.join(folder, name)


def _format_elapsed(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_grid(config, *, log=None):
    """Runs every missing run of `config`; returns all records of the file.

    Args:
        config: a `ReproduceConfig`.
        log: a callable taking one line (default: print to stdout, flushed).

    Returns:
        The list of records in `<output>/results.json` after the run.
    """
    import keras

    from keras_lowrank.benchmarks.reproduce.tasks import build_model
    from keras_lowrank.benchmarks.reproduce.tasks import prepare_task

    log = log or (lambda line: print(line, flush=True))
    import tensorflow as tf

    # Many small models are built and traced in one process: TensorFlow's
    # retracing warnings are expected here and only hide the progress lines.
    tf.get_logger().setLevel("ERROR")
    if config.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(config.threads)
            tf.config.threading.set_inter_op_parallelism_threads(config.threads)
        except RuntimeError:
            pass  # TensorFlow already initialized in this process
    path = os.path.join(config.output, RESULTS_FILE)
    records = load_records(path)
    done = {record_key(r) for r in records}
    jobs = _jobs(config)
    cells = list(_cells(config))
    todo = sum(
        1 for cell_id in cells for (m, s, sch) in jobs if _key(cell_id, m, s, sch, config) not in done
    )
    log(
        f"reproduce: {len(cells)} cells x {len(jobs)} runs each, {todo} to run "
        f"({len(records)} records already in {path})"
    )
    start = time.perf_counter()
    counter = 0
    tasks = {}
    for cell_id in cells:
        dataset, vectors, model_name, seed = cell_id
        missing = [j for j in jobs if _key(cell_id, *j, config) not in done]
        if not missing:
            continue
        task_key = (dataset, vectors)
        if task_key not in tasks:
            tasks.clear()  # one task in memory at a time
            tasks[task_key] = prepare_task(
                dataset,
                vectors,
                sequence_length=config.sequence_length,
                max_train=config.max_train,
                min_count=config.vocab_min_count,
            )
        task = tasks[task_key]

        # The uncompressed model of the cell: trained once, cached.
        cache = _cache_path(config, cell_id)
        base_fit, t0 = None, time.perf_counter()
        if os.path.exists(cache):
            keras.utils.set_random_seed(seed)
            base = build_model(task, model_name)
            base.load_weights(cache)
            if os.path.exists(cache + ".json"):
                with open(cache + ".json", encoding="utf-8") as f:
                    base_fit = json.load(f)
        else:
            base, base_fit = M.train_uncompressed(task, model_name, seed, config)
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            # Weights first, then the fit record: an interrupted cache write
            # leaves either nothing or complete weights, never half a file.
            with atomic_path(cache) as tmp:
                base.save_weights(tmp)
            write_json(cache + ".json", base_fit)
        base_seconds = time.perf_counter() - t0
        cell = M.Cell(task, model_name, seed, config, base)
        reused = {}
        for method, size, schedule in missing:
            counter += 1
            t0 = time.perf_counter()
            record = _base_record(task, cell_id, config, method, size, schedule)
            try:
                if size is None:
                    out = M.run_fixed(cell, method, base_fit)
                    if method == "uncompressed":
                        out["seconds_train"] = round(base_seconds, 2)
                    p = None
                else:
                    p = M.plan(method, task.vocab_size, task.embedding_dim, size)
                    record["budget_bytes"] = p.budget_bytes
                    if p.infeasible:
                        out = {"status": "infeasible", "reason": p.infeasible,
                               "rank": p.rank, "vocab_rows": p.rows}
                    elif (p.key, schedule) in reused:
                        # Same rank/rows as a larger size already run in this
                        # cell: the same model meets this budget too.
                        out = dict(reused[(p.key, schedule)])
                        out["reused_from_size"] = out.pop("_size")
                    else:
                        out = M.run_sized(cell, p, schedule)
                        reused[(p.key, schedule)] = dict(out, _size=size)
            except Exception as error:  # a failed run is recorded, the grid goes on
                if getattr(config, "fail_fast", False):
                    raise
                out = {"status": "error", "reason": f"{type(error).__name__}: {error}"[:300]}
            seconds = time.perf_counter() - t0
            record.update(out)
            record.setdefault("status", "ok")
            record["seconds"] = round(seconds, 2)
            _finish_record(record)
            records.append(record)
            save_records(path, records)
            log(_progress_line(counter, todo, time.perf_counter() - start, record))
    log(f"reproduce: done in {_format_elapsed(time.perf_counter() - start)}; {len(records)} records in {path}")
    return records


def _base_record(task, cell_id, config, method, size, schedule):
    dataset, vectors, model_name, seed = cell_id
    V, d = task.vocab_size, task.embedding_dim
    return {
        "dataset": dataset_name(dataset),
        "dataset_path": os.path.abspath(dataset) if os.path.isdir(dataset) else None,
        "model": model_name,
        "vectors": vectors,
        "method": method,
        "target": size is not None,
        "size": size,
        "compression": None if size is None else round(1.0 - size, 6),
        "seed": seed,
        "schedule_key": schedule if method in FINETUNED_METHODS else "-",
        "base_epochs": config.epochs,
        "finetune_epochs": config.finetune_epochs,
        "max_train": config.max_train,
        "batch_size": config.batch_size,
        "vocab_size": V,
        "embedding_dim": d,
        "float32_embedding_bytes": 4 * V * d,
        "budget_bytes": None,
        "train_examples": int(len(task.train[1])),
        "vector_token_coverage": task.coverage,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _finish_record(record):
    for field in RECORD_FIELDS:
        record.setdefault(field, None)
    if record["status"] == "ok" and record.get("embedding_bytes") is not None:
        fraction = record["embedding_bytes"] / record["float32_embedding_bytes"]
        record["embedding_fraction"] = round(fraction, 6)
        if record.get("budget_bytes") is not None:
            # Plans are made from byte formulas; the measured bytes decide.
            record["over_budget"] = record["embedding_bytes"] > record["budget_bytes"]
        if record["size"] is None:
            # Fixed-size methods: their size is what they measure.
            record["size"] = round(fraction, 6)
            record["compression"] = round(1.0 - fraction, 6)
        for name in ("dev_accuracy", "test_accuracy", "float_dev_accuracy"):
            if record.get(name) is not None:
                record[name] = round(float(record[name]), 6)


def _progress_line(i, n, elapsed, r):
    what = f"{r['dataset']}/{r['model']}/{r['vectors']} s{r['seed']} {r['method']}"
    if r.get("target"):
        what += f" @{size_label(r['size'])}"
    if r.get("schedule_key") not in (None, "-"):
        what += f" [{r['schedule_key']}]"
    if r["status"] != "ok":
        result = f"{r['status']}: {r.get('reason')}"
    else:
        shape = ""
        if r.get("rank"):
            shape += f" r={r['rank']}"
        if r.get("vocab_rows"):
            shape += f" rows={r['vocab_rows']}"
        result = (
            f"dev {100 * r['dev_accuracy']:.2f} test {100 * r['test_accuracy']:.2f} "
            f"bytes {100 * r['embedding_fraction']:.2f}%{shape}"
        )
    return f"[{i}/{n} {_format_elapsed(elapsed)}] {what}: {result} ({r['seconds']:.1f} s)"


def print_summary(records, out=sys.stdout):
    """Prints mean test accuracy per dataset/model/method/size (the end table)."""
    # The report never imports the runner.
    from keras_lowrank.benchmarks.reproduce.report import subset_note
    from keras_lowrank.benchmarks.reproduce.report import summary_rows

    rows = summary_rows(records)
    if not rows:
        print("(no successful runs)", file=out)
        return
    # Text columns as wide as their longest entry, so that a long method
    # name or a vectors path never shifts the columns after it.
    width = {
        name: max([len(name)] + [len(str(row[name])) for row in rows])
        for name in ("dataset", "model", "vectors", "method")
    }
    text = " ".join(f"{{:<{width[name]}}}" for name in width)
    header = text.format(*width) + f" {'size':>7} {'bytes':>7} {'test':>14} {'drop':>6} n"
    print(header, file=out)
    print("-" * len(header), file=out)
    for row in rows:
        drop = "" if row["drop"] is None else f"{row['drop']:+.2f}"
        print(
            text.format(*(row[name] for name in width))
            + f" {size_label(row['size']):>7} {100 * row['fraction']:>6.2f}% "
            f"{100 * row['test_mean']:>6.2f}+/-{100 * row['test_std']:<5.2f} {drop:>6} {row['n']}",
            file=out,
        )
    note = subset_note(records)
    if note:
        print("\n" + " ".join(note), file=out)
