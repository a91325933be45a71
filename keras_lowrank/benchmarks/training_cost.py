"""Training cost of a full versus a factorized embedding: `fit` step time and optimizer memory.

`keras-lowrank bench train` builds the same deep averaging network (DAN) with
a dense `keras.layers.Embedding` of shape `[V, d]` and with the
`keras_lowrank.LowRankEmbedding` factorized from it at a given compression,
compiles both with Adam, and measures in one run, on the same batches:

- the wall time (and CPU time) of one `fit` step, median over repeated,
  interleaved blocks of steps, so that a change in machine load hits every
  variant alike;
- the bytes of optimizer state (Adam's two moment slots) held for the
  embedding, and for the whole model, counted from the live optimizer
  variables;
- the same two models trained with `keras_lowrank.training.LazyAdam`, which
  updates only the rows of a sparse embedding gradient (TensorFlow only; on
  JAX and PyTorch gradients are dense and it is Adam), so that both the
  like-for-like ratio (Adam / Adam, LazyAdam / LazyAdam) and the ratio of
  stock Adam on the full table to LazyAdam on the factors are reported;
- to explain the difference: the step time of the same two models trained
  with plain SGD, and (TensorFlow only, where an embedding gradient is a
  `tf.IndexedSlices`) the time of one Adam, LazyAdam and SGD update of the
  full table with a sparse and with a dense gradient.

`--backend tensorflow|jax|torch` picks the Keras backend. Keras reads
`KERAS_BACKEND` once, when it is first imported: the command line imports it
only after parsing, so the option sets the variable in time; where Keras is
already imported on another backend (a test, a notebook) the measurement
runs in a child process of the same Python with the variable set. The data
are plain numpy arrays, so no backend needs TensorFlow.

Results are written as machine-readable `results.json` and rendered to
`results.md`; `--render-only` re-renders them, and `--doc PAGE` the page's
generated section, from the JSON without measuring (see
`keras_lowrank.benchmarks.output`).

This module must not change any library behaviour to make the numbers look
better: the models use stock `keras.optimizers.Adam` (or the library's public
`LazyAdam`, reported as such) and `model.fit`. It imports Keras and the
backend lazily inside `run`, so that the command line's `--help` stays quick.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import statistics
import time

from keras_lowrank.benchmarks import environment
from keras_lowrank.benchmarks import markdown
from keras_lowrank.benchmarks import output

DEFAULTS = {
    "vocab_size": 100_000,
    "embedding_dim": 300,
    "compression": 0.9,
    "batch_size": 256,
    "sequence_length": 32,
    "hidden_units": 300,
    "dropout": 0.3,
    "num_classes": 6,
    "learning_rate": 1e-3,
    "steps": 20,
    "repeats": 11,
    "warmup_steps": 3,
}

# A PyTorch `fit` step of this DAN takes several times longer than on
# TensorFlow or JAX on 2 CPU cores (Keras runs PyTorch eagerly), so the
# default run there is shorter, to stay within about 5 minutes at V=100k.
BACKEND_DEFAULTS = {"torch": {"steps": 10, "repeats": 5}}

# `--quick` keeps the shape of the experiment (both variants, interleaved,
# medians) but on a table small enough for a smoke test of a few seconds.
QUICK = {"vocab_size": 20_000, "steps": 5, "repeats": 2, "warmup_steps": 1}

VARIANTS = ("full", "factorized")
# The same two models trained with `keras_lowrank.training.LazyAdam`.
LAZY_VARIANTS = ("full_lazy", "factorized_lazy")
# The same two models trained with plain SGD, whose update keeps the sparse
# embedding gradient sparse: the difference to the Adam step time is the cost
# of Adam's dense update of the embedding.
SGD_VARIANTS = ("full_sgd", "factorized_sgd")

# Keras backend -> the Python package it needs.
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def add_arguments(parser):
    """Adds this benchmark's options to an `argparse` parser."""
    output.add_output_arguments(parser, "train")
    parser.add_argument(
        "--backend", choices=tuple(BACKENDS), default=None, action=_BackendAction,
        help="Keras backend to measure on (default: the current one, from KERAS_BACKEND or "
        "~/.keras/keras.json). Its package must be importable by this Python.",
    )
    parser.add_argument(
        "--vocab-size", type=int, default=None,
        help=f"Rows V of the embedding table (default {DEFAULTS['vocab_size']}).",
    )
    parser.add_argument(
        "--embedding-dim", type=int, default=DEFAULTS["embedding_dim"],
        help="Columns d of the embedding table (default %(default)s).",
    )
    parser.add_argument(
        "--compression", type=float, default=DEFAULTS["compression"],
        help="Share of embedding parameters removed, in (0, 1) (default %(default)s).",
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULTS["batch_size"],
        help="Examples per step (default %(default)s).",
    )
    parser.add_argument(
        "--sequence-length", type=int, default=DEFAULTS["sequence_length"],
        help="Token ids per example, zero-padded (default %(default)s).",
    )
    parser.add_argument(
        "--steps", type=int, default=None,
        help=f"Timed steps per block (default {DEFAULTS['steps']}; "
        f"{BACKEND_DEFAULTS['torch']['steps']} on torch).",
    )
    parser.add_argument(
        "--repeats", type=int, default=None,
        help=f"Blocks per variant, interleaved (default {DEFAULTS['repeats']}; "
        f"{BACKEND_DEFAULTS['torch']['repeats']} on torch).",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed for weights and data (default %(default)s).",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help=(
            f"Smoke-test size: V={QUICK['vocab_size']}, {QUICK['repeats']} blocks of "
            f"{QUICK['steps']} steps (explicit options still win)."
        ),
    )


def run(args):
    """Runs the benchmark described by parsed `args`; returns the exit status."""
    output.check_doc(args, "train")
    if args.render_only:
        results = output.load_results(args.output)
    else:
        # Validate before measuring or creating anything on disk.
        backend = _backend_from_args(args)
        config = _config_from_args(args, backend)
        import keras

        if backend == keras.backend.backend():
            results = measure(**config)
        else:
            results = _measure_in_subprocess(backend, config)
        results["command"] = _command(args, config, backend)
        output.save_results(results, args.output)
    text = output.publish(
        results, args, render_markdown, name="train",
        title="Training cost benchmark results", summarize=summarize,
    )
    print(text)
    return 0


def measure(
    *,
    vocab_size,
    embedding_dim,
    compression,
    batch_size,
    sequence_length,
    steps,
    repeats,
    warmup_steps,
    seed,
    hidden_units=DEFAULTS["hidden_units"],
    dropout=DEFAULTS["dropout"],
    num_classes=DEFAULTS["num_classes"],
    learning_rate=DEFAULTS["learning_rate"],
):
    """Measures every variant in this process, on the current Keras backend.

    Returns:
        A JSON-ready dict (see `render_markdown` for what it holds).
    """
    import keras
    import numpy as np

    from keras_lowrank.models import dan_classifier
    from keras_lowrank.surgery import factorize_embeddings
    from keras_lowrank.training import LazyAdam

    backend = keras.backend.backend()
    keras.utils.set_random_seed(seed)
    machine = environment.describe_machine(("numpy", BACKENDS[backend], "keras"))

    def dan():
        return dan_classifier(
            vocab_size, num_classes, embedding_dim=embedding_dim,
            sequence_length=sequence_length, hidden_units=(hidden_units, hidden_units),
            dropout=dropout,
        )

    full = dan()
    # Each model is a copy of the full model (factorized ones converted from
    # their own copy), so no two models share a layer and each optimizer
    # sees only its model.
    models = {"full": full}
    conversion_seconds = None
    for name in VARIANTS[1:] + LAZY_VARIANTS + SGD_VARIANTS:
        copy = dan()
        copy.set_weights(full.get_weights())
        if name.startswith("factorized"):
            started = time.perf_counter()
            copy = factorize_embeddings(copy, compression=compression)
            conversion_seconds = conversion_seconds or time.perf_counter() - started
        models[name] = copy
    low_rank = models["factorized"].get_layer("embedding")
    for name, model in models.items():
        if name in SGD_VARIANTS:
            optimizer = keras.optimizers.SGD(learning_rate)
        elif name in LAZY_VARIANTS:
            optimizer = LazyAdam(learning_rate)
        else:
            optimizer = keras.optimizers.Adam(learning_rate)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )

    ids, labels = _batches(np, vocab_size, batch_size, sequence_length, num_classes, seed)
    rows_per_batch = [
        int(np.count_nonzero(np.unique(ids[i : i + batch_size])))
        for i in range(0, len(ids), batch_size)
    ]

    def fit(model, num_steps, callbacks=()):
        # Plain arrays holding exactly `num_steps` batches: every backend's
        # own array adapter feeds them, and no epoch runs out of data.
        x, y = _repeat_batches(np, ids, labels, batch_size, num_steps)
        model.fit(
            x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
            callbacks=list(callbacks),
        )

    # The first `fit` traces and compiles the train function; it is not timed.
    for model in models.values():
        fit(model, max(1, warmup_steps))

    step_seconds = {name: [] for name in models}
    step_cpu_seconds = {name: [] for name in models}
    block_medians = {name: [] for name in models}
    timer = _step_timer(keras)
    for repeat in range(repeats):
        # Alternate the order so neither variant always runs right after the
        # other's (cache, allocator and load effects fall on both alike).
        order = VARIANTS + LAZY_VARIANTS + SGD_VARIANTS
        order = order if repeat % 2 == 0 else order[::-1]
        for name in order:
            timer.reset()
            fit(models[name], steps, callbacks=[timer])
            step_seconds[name].extend(timer.seconds)
            step_cpu_seconds[name].extend(timer.cpu_seconds)
            block_medians[name].append(statistics.median(timer.seconds))

    update_cost = None
    if backend == "tensorflow":
        update_cost = _update_cost(
            keras, np, vocab_size, embedding_dim, int(np.median(rows_per_batch)), seed,
            repeats=max(5, repeats * 3),
        )
    variants = {}
    for name in VARIANTS + LAZY_VARIANTS:
        model = models[name]
        embedding = model.get_layer("embedding")
        variants[name] = {
            "embedding_parameters": int(sum(_size(v) for v in embedding.trainable_variables)),
            "model_parameters": int(sum(_size(v) for v in model.trainable_variables)),
            "embedding_optimizer_state_bytes": _optimizer_state_bytes(
                keras, embedding.trainable_variables, learning_rate
            ),
            "optimizer_state_bytes": int(
                sum(_bytes(v) for v in model.optimizer.variables if len(v.shape) > 0)
            ),
            **_timings(step_seconds[name], step_cpu_seconds[name], block_medians[name]),
        }
    variants["factorized"]["rank"] = int(low_rank.rank)
    variants["factorized_lazy"]["rank"] = int(low_rank.rank)
    sgd = {
        name: {
            "step_ms_median": 1e3 * statistics.median(step_seconds[name]),
            "step_cpu_ms_median": 1e3 * statistics.median(step_cpu_seconds[name]),
            "block_median_ms": [1e3 * s for s in block_medians[name]],
            "timed_steps": len(step_seconds[name]),
        }
        for name in SGD_VARIANTS
    }
    full_v, fact_v = variants["full"], variants["factorized"]
    ratios = {
        "step_time_full_over_factorized": full_v["step_ms_median"] / fact_v["step_ms_median"],
        # Each full block sits next to a factorized block in time, so
        # the ratio within a pair cancels most slow changes of load.
        "step_time_full_over_factorized_paired_blocks_median": _paired(full_v, fact_v),
        "step_cpu_time_full_over_factorized": (
            full_v["step_cpu_ms_median"] / fact_v["step_cpu_ms_median"]
        ),
        "embedding_optimizer_state_full_over_factorized": (
            full_v["embedding_optimizer_state_bytes"] / fact_v["embedding_optimizer_state_bytes"]
        ),
        "optimizer_state_full_over_factorized": (
            full_v["optimizer_state_bytes"] / fact_v["optimizer_state_bytes"]
        ),
        "embedding_parameters_full_over_factorized": (
            full_v["embedding_parameters"] / fact_v["embedding_parameters"]
        ),
    }
    # The two LazyAdam ratios: stock Adam on the full table against LazyAdam
    # on the factors (what a user switching both gets), and LazyAdam on both
    # (like for like, as Adam / Adam above).
    for key, numerator, denominator in (
        ("full_over_factorized_lazy", "full", "factorized_lazy"),
        ("full_lazy_over_factorized_lazy", "full_lazy", "factorized_lazy"),
    ):
        a, b = variants[numerator], variants[denominator]
        ratios[f"step_time_{key}"] = a["step_ms_median"] / b["step_ms_median"]
        ratios[f"step_time_{key}_paired_blocks_median"] = _paired(a, b)
        ratios[f"step_cpu_time_{key}"] = a["step_cpu_ms_median"] / b["step_cpu_ms_median"]
    return {
        "benchmark": "training_cost",
        "backend": {"name": backend, "version": machine["libraries"].get(BACKENDS[backend])},
        "config": {
            "vocab_size": vocab_size,
            "embedding_dim": embedding_dim,
            "compression": compression,
            "rank": int(low_rank.rank),
            "batch_size": batch_size,
            "sequence_length": sequence_length,
            "hidden_units": hidden_units,
            "num_classes": num_classes,
            "optimizer": (
                f"keras.optimizers.Adam(learning_rate={learning_rate}); "
                f"keras_lowrank.training.LazyAdam(learning_rate={learning_rate}) for the "
                f"*_lazy variants; keras.optimizers.SGD(learning_rate={learning_rate}) for "
                "the *_sgd variants"
            ),
            "model": (
                f"keras_lowrank.models.dan_classifier(hidden_units=({hidden_units}, "
                f"{hidden_units}), dropout={dropout}): embedding (mask_zero) -> masked "
                f"mean -> [Dense(relu), Dropout({dropout})] x 2 -> Dense(logits)"
            ),
            "data": "numpy arrays passed to model.fit (batch_size, shuffle=False)",
            "steps_per_block": steps,
            "blocks_per_variant": repeats,
            "warmup_steps": warmup_steps,
            "seed": seed,
        },
        "variants": variants,
        "sgd_variants": sgd,
        "ratios": ratios,
        "rows_touched_per_batch_median": int(np.median(rows_per_batch)),
        # `None` off TensorFlow: only there is an embedding gradient sparse.
        "update_of_full_table_ms": update_cost,
        "conversion_seconds": conversion_seconds,
        "machine": output.finish_machine(machine),
        "command": "keras-lowrank bench train " + " ".join(
            f"{flag} {value}" for flag, value in _flags(
                backend=backend, vocab_size=vocab_size, embedding_dim=embedding_dim,
                compression=compression, batch_size=batch_size,
                sequence_length=sequence_length, steps=steps, repeats=repeats, seed=seed,
            )
        ),
    }


def render_markdown(results, link_base="", heading_level=2):
    """Renders the results dict (as written to results.json) as Markdown.

    Args:
        results: the results dict.
        link_base: path from the page being written to the output folder.
        heading_level: unused (the report has no subsections); accepted so
            that every benchmark renders through the same call.

    Returns:
        The backend, the table of both variants with their ratios, the step
        times with each optimizer (Adam, LazyAdam, SGD) and the three step
        ratios, the targets of issue 5, the measurements that explain the
        step-time ratio, the machine and load, and the command. Results
        written before the backend and LazyAdam were measured render as they
        did then.
    """
    del heading_level
    config = results["config"]
    full, fact = results["variants"]["full"], results["variants"]["factorized"]
    lazy = "full_lazy" in results["variants"]
    ratios = results["ratios"]
    backend = results.get("backend")
    mib = 1024.0 * 1024.0
    rows = [
        ("Embedding parameters", f"{full['embedding_parameters']:,}",
         f"{fact['embedding_parameters']:,}", ratios["embedding_parameters_full_over_factorized"]),
        ("`fit` step time, median ms [p25, p75]",
         f"{full['step_ms_median']:.1f} [{full['step_ms_p25']:.1f}, {full['step_ms_p75']:.1f}]",
         f"{fact['step_ms_median']:.1f} [{fact['step_ms_p25']:.1f}, {fact['step_ms_p75']:.1f}]",
         ratios["step_time_full_over_factorized"]),
        ("Adam state for the embedding, MiB",
         f"{full['embedding_optimizer_state_bytes'] / mib:.1f}",
         f"{fact['embedding_optimizer_state_bytes'] / mib:.1f}",
         ratios["embedding_optimizer_state_full_over_factorized"]),
        ("Adam state for the whole model, MiB",
         f"{full['optimizer_state_bytes'] / mib:.1f}",
         f"{fact['optimizer_state_bytes'] / mib:.1f}",
         ratios["optimizer_state_full_over_factorized"]),
    ]
    if lazy:
        # LazyAdam keeps Adam's slots: the memory rows hold for both.
        rows[1] = ("`fit` step time with Adam, median ms [p25, p75]",) + rows[1][1:]
        rows[2] = ("Adam (and LazyAdam) state for the embedding, MiB",) + rows[2][1:]
        rows[3] = ("Adam (and LazyAdam) state for the whole model, MiB",) + rows[3][1:]
    step_ratio = ratios["step_time_full_over_factorized"]
    lines = [
        f"Training cost, V={config['vocab_size']:,}, d={config['embedding_dim']}, "
        f"compression={config['compression']} (rank {config['rank']}), "
        f"batch {config['batch_size']} x {config['sequence_length']} tokens, "
        + ("Adam and LazyAdam" if lazy else "Adam") + ", DAN"
        + (f", Keras backend {_backend_name(backend)}." if backend else "."),
        "",
    ]
    lines += markdown.table(
        ["", "full `Embedding`", "`LowRankEmbedding`", "full / factorized"],
        [[name, a, b, f"{ratio:.1f}x"] for name, a, b, ratio in rows],
    )
    if lazy:
        lines += ["", *_lazy_lines(results)]
    else:
        lines += [
            "",
            f"Targets of issue 5: `fit` step >= 6x faster: {step_ratio:.1f}x "
            f"({'met' if step_ratio >= 6 else 'not met'}); "
            f"about 10x less Adam state for the embedding: "
            f"{ratios['embedding_optimizer_state_full_over_factorized']:.1f}x.",
        ]
    lines += [
        "",
        f"Median of the {len(full['block_median_ms'])} ratios of neighbouring blocks "
        f"(full block / factorized block run next to it): "
        f"{ratios['step_time_full_over_factorized_paired_blocks_median']:.1f}x. "
        f"CPU time per step (all threads of the process), median: "
        f"{full['step_cpu_ms_median']:.1f} ms full, {fact['step_cpu_ms_median']:.1f} ms "
        f"factorized ({ratios['step_cpu_time_full_over_factorized']:.1f}x).",
    ]
    sgd = results.get("sgd_variants")
    if sgd:
        full_sgd = sgd["full_sgd"]["step_ms_median"]
        fact_sgd = sgd["factorized_sgd"]["step_ms_median"]
        lines += [
            "",
            f"The same two models trained with plain SGD (sparse updates), median step: "
            f"{full_sgd:.1f} ms full, {fact_sgd:.1f} ms factorized. Adam's dense update of "
            f"the embedding thus costs about {full['step_ms_median'] - full_sgd:.0f} ms per "
            f"step for the full table and {fact['step_ms_median'] - fact_sgd:.0f} ms for the "
            f"factors. The factorized SGD step is the part of a step that does not shrink "
            f"with the table (dense layers, masked mean, dropout, the factorized lookup, "
            f"Keras' per-step work): even a free update of `A` could not make the Adam "
            f"step ratio exceed {full['step_ms_median']:.1f} / {fact_sgd:.1f} = "
            f"{full['step_ms_median'] / fact_sgd:.1f}x in this run.",
        ]
        if backend and backend["name"] != "tensorflow":
            lines[-1] = lines[-1].replace(
                "(sparse updates)", "(on this backend the embedding gradient is dense)"
            )
    update = results["update_of_full_table_ms"]
    machine = environment.normalize_machine(results["machine"])
    if update is not None:
        lines += [
            "",
            f"Why: a batch touches a median of {results['rows_touched_per_batch_median']:,} of "
            f"{config['vocab_size']:,} rows, yet one Adam update of the full table takes "
            f"{update['adam']['indexed_slices_gradient']:.1f} ms with a sparse (`IndexedSlices`) "
            f"gradient of {update['rows_in_gradient']:,} rows and "
            f"{update['adam']['dense_gradient']:.1f} ms with the same gradient made dense: "
            "Keras' Adam updates every row of the table at every step. Plain SGD keeps the "
            f"gradient sparse: {update['sgd']['indexed_slices_gradient']:.1f} ms sparse, "
            f"{update['sgd']['dense_gradient']:.1f} ms dense."
            + (
                f" LazyAdam updates the gradient's rows only: "
                f"{update['lazy_adam']['indexed_slices_gradient']:.1f} ms sparse "
                f"({update['lazy_adam']['dense_gradient']:.1f} ms dense, where it is Adam)."
                if "lazy_adam" in update else ""
            ),
        ]
    elif backend:
        lines += [
            "",
            f"Why: a batch touches a median of {results['rows_touched_per_batch_median']:,} of "
            f"{config['vocab_size']:,} rows, but on the {_backend_name(backend)} backend the "
            "gradient of an embedding lookup is a dense `[V, d]` tensor (zero outside those "
            "rows): every optimizer, LazyAdam included (it is exactly Adam for a dense "
            "gradient), reads and writes the whole table at every step. The update cost of "
            "a sparse (`IndexedSlices`) gradient is measured on TensorFlow only.",
        ]
    lines += [
        "",
        f"Medians over {full['timed_steps']} timed steps per variant "
        f"({config['blocks_per_variant']} interleaved blocks of {config['steps_per_block']}). "
        f"Raw numbers: [{output.RESULTS_JSON}]({output.link(link_base, output.RESULTS_JSON)}).",
        "",
        f"Machine: {environment.machine_summary(machine)}",
        "",
        f"Command: `{results['command']}`",
    ]
    return "\n".join(lines) + "\n"


def _lazy_lines(results):
    """The step times with each optimizer, the three step ratios and the targets."""
    variants, sgd, ratios = results["variants"], results["sgd_variants"], results["ratios"]
    optimizers = [
        ("Adam", variants["full"], variants["factorized"], ratios["step_time_full_over_factorized"]),
        ("LazyAdam", variants["full_lazy"], variants["factorized_lazy"],
         ratios["step_time_full_lazy_over_factorized_lazy"]),
        ("SGD", sgd["full_sgd"], sgd["factorized_sgd"],
         sgd["full_sgd"]["step_ms_median"] / sgd["factorized_sgd"]["step_ms_median"]),
    ]
    lines = markdown.table(
        ["`fit` step, median ms", "full `Embedding`", "`LowRankEmbedding`", "full / factorized"],
        [
            [name, f"{a['step_ms_median']:.1f}", f"{b['step_ms_median']:.1f}", f"{r:.1f}x"]
            for name, a, b, r in optimizers
        ],
    )
    targets = [
        ("Adam / Adam (stock Keras on both)", "step_time_full_over_factorized"),
        ("Adam on the full table / LazyAdam on the factors",
         "step_time_full_over_factorized_lazy"),
        ("LazyAdam / LazyAdam (like for like)", "step_time_full_lazy_over_factorized_lazy"),
    ]
    lines += [
        "",
        "Target of issue 5, `fit` step >= 6x faster (median step ratio; median of the "
        "ratios of blocks of the same round in brackets):",
        "",
    ]
    for label, key in targets:
        ratio = ratios[key]
        lines.append(
            f"- {label}: {ratio:.1f}x [{ratios[key + '_paired_blocks_median']:.1f}x], "
            f"{'met' if ratio >= 6 else 'not met'}."
        )
    lines += [
        "",
        f"About 10x less optimizer state for the embedding: "
        f"{ratios['embedding_optimizer_state_full_over_factorized']:.1f}x (LazyAdam keeps "
        "Adam's two slots; it saves time, not memory).",
    ]
    return lines


def _backend_name(backend):
    version = backend.get("version")
    return f"{backend['name']} ({version})" if version else backend["name"]


def summarize(results):
    """One phrase about a results dict, for the list of earlier measurements."""
    variants, ratios = results["variants"], results["ratios"]
    text = (
        f"step {variants['full']['step_ms_median']:.1f} ms full, "
        f"{variants['factorized']['step_ms_median']:.1f} ms factorized "
        f"({ratios['step_time_full_over_factorized']:.1f}x)"
    )
    if "factorized_lazy" in variants:
        text += (
            f", {variants['factorized_lazy']['step_ms_median']:.1f} ms factorized with "
            f"LazyAdam ({ratios['step_time_full_over_factorized_lazy']:.1f}x)"
        )
    if results.get("backend"):
        text = f"{results['backend']['name']}: {text}"
    return text


def _config_from_args(args, backend):
    # Explicit options win over `--quick`, which wins over the backend's
    # defaults, which win over the common defaults.
    base = dict(DEFAULTS)
    base.update(BACKEND_DEFAULTS.get(backend, {}))
    if args.quick:
        base.update(QUICK)
    config = {
        "vocab_size": args.vocab_size if args.vocab_size is not None else base["vocab_size"],
        "embedding_dim": args.embedding_dim,
        "compression": args.compression,
        "batch_size": args.batch_size,
        "sequence_length": args.sequence_length,
        "steps": args.steps if args.steps is not None else base["steps"],
        "repeats": args.repeats if args.repeats is not None else base["repeats"],
        "warmup_steps": base["warmup_steps"],
        "seed": args.seed,
    }
    for name in ("vocab_size", "embedding_dim", "batch_size", "sequence_length", "steps", "repeats"):
        if not isinstance(config[name], int) or config[name] < 1:
            raise ValueError(
                f"Expected `{name}` to be a positive integer, received: {name}={config[name]}"
            )
    if config["vocab_size"] < 2:
        raise ValueError(
            f"Expected `vocab_size` to be at least 2 (id 0 is padding), "
            f"received: vocab_size={config['vocab_size']}"
        )
    if not 0.0 < config["compression"] < 1.0:
        raise ValueError(
            "Expected `compression` to be in the open interval (0, 1), "
            f"received: compression={config['compression']}"
        )
    return config


def _batches(np, vocab_size, batch_size, sequence_length, num_classes, seed):
    """A few fixed batches of token ids with zero padding, and their labels.

    Ids follow a Zipf-like law as words in text do, so a batch touches a few
    thousand distinct rows of the table, not all of them; that is what makes
    the gradient of the table sparse.
    """
    rng = np.random.default_rng(seed)
    num_batches = 8
    n = num_batches * batch_size
    ranks = np.arange(1, vocab_size, dtype=np.float64)
    p = 1.0 / ranks
    p /= p.sum()
    ids = rng.choice(np.arange(1, vocab_size), size=(n, sequence_length), p=p).astype("int32")
    lengths = rng.integers(sequence_length // 4 + 1, sequence_length + 1, size=n)
    ids[np.arange(sequence_length)[None, :] >= lengths[:, None]] = 0
    labels = rng.integers(0, num_classes, size=n).astype("int32")
    return ids, labels


def _repeat_batches(np, ids, labels, batch_size, num_steps):
    """The fixed batches cycled to exactly `num_steps` batches."""
    rows = np.arange(num_steps * batch_size) % len(ids)
    return ids[rows], labels[rows]


def _timings(seconds, cpu_seconds, block_medians):
    return {
        "step_ms_median": 1e3 * statistics.median(seconds),
        "step_ms_p25": 1e3 * _quantile(seconds, 0.25),
        "step_ms_p75": 1e3 * _quantile(seconds, 0.75),
        "step_cpu_ms_median": 1e3 * statistics.median(cpu_seconds),
        "block_median_ms": [1e3 * s for s in block_medians],
        "timed_steps": len(seconds),
    }


def _paired(a, b):
    """Median over repeats of the ratio of `a`'s block to `b`'s block of the same repeat."""
    return statistics.median(f / g for f, g in zip(a["block_median_ms"], b["block_median_ms"]))


def _step_timer(keras):
    """A callback recording the wall time of every training batch."""

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.reset()

        def reset(self):
            self.seconds = []
            self.cpu_seconds = []

        def on_train_batch_begin(self, batch, logs=None):
            self._start = (time.perf_counter(), time.process_time())

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self._start[0])
            # CPU time of all this process's threads: unlike wall time it
            # does not grow when other processes take the cores.
            self.cpu_seconds.append(time.process_time() - self._start[1])

    return StepTimer()


def _update_cost(keras, np, vocab_size, embedding_dim, rows, seed, repeats):
    """Median ms of one optimizer update of a `[V, d]` table, sparse vs dense gradient.

    TensorFlow only. The gradient of an embedding lookup is a
    `tf.IndexedSlices` holding only the rows a batch touched. If the
    optimizer kept it sparse, the update would cost O(rows * d). Keras 3's
    Adam turns it dense (`m += (g - m) * (1 - beta_1)` mixes it with the
    dense slot `m`), so its update costs O(V * d) whatever the gradient;
    `LazyAdam` and plain SGD (no momentum) keep it sparse and scatter it.
    Timing both gradients with each optimizer on the same table shows the
    difference.
    """
    import tensorflow as tf

    from keras_lowrank.training import LazyAdam

    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(vocab_size, size=min(rows, vocab_size), replace=False))
    values = rng.normal(size=(len(indices), embedding_dim)).astype("float32")
    sparse = tf.IndexedSlices(
        tf.constant(values), tf.constant(indices.astype("int64")),
        tf.constant([vocab_size, embedding_dim], dtype="int64"),
    )
    gradients = {"indexed_slices_gradient": sparse, "dense_gradient": tf.convert_to_tensor(sparse)}
    result = {"rows_in_gradient": int(len(indices))}
    for name, optimizer in (
        ("adam", keras.optimizers.Adam()),
        ("lazy_adam", LazyAdam()),
        ("sgd", keras.optimizers.SGD(learning_rate=0.01)),
    ):
        table = keras.Variable(np.zeros((vocab_size, embedding_dim), "float32"), name="table")
        optimizer.build([table])
        apply = _apply_function(tf, optimizer, table)
        for gradient in gradients.values():
            apply(gradient)  # trace once per gradient type, untimed
        seconds = {kind: [] for kind in gradients}
        for _ in range(repeats):
            for kind, gradient in gradients.items():
                start = time.perf_counter()
                apply(gradient)
                seconds[kind].append(time.perf_counter() - start)
        result[name] = {kind: 1e3 * statistics.median(v) for kind, v in seconds.items()}
        del table
    return result


def _apply_function(tf, optimizer, variable):
    """A `tf.function` applying one gradient of `variable` with `optimizer`."""

    @tf.function
    def apply(gradient):
        optimizer.apply_gradients([(gradient, variable)])

    return apply


def _optimizer_state_bytes(keras, variables, learning_rate):
    """Bytes of Adam state for `variables`, from a fresh Adam built on them alone."""
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(variables)
    # Scalars (step counter, learning rate) are not per-parameter state.
    return int(sum(_bytes(v) for v in optimizer.variables if len(v.shape) > 0))


def _size(variable):
    n = 1
    for dim in variable.shape:
        n *= int(dim)
    return n


def _bytes(variable):
    import numpy as np

    return _size(variable) * np.dtype(variable.dtype).itemsize


def _quantile(values, q):
    values = sorted(values)
    position = q * (len(values) - 1)
    lower = int(position)
    upper = min(lower + 1, len(values) - 1)
    return values[lower] + (values[upper] - values[lower]) * (position - lower)


def _flags(**values):
    return [(f"--{name.replace('_', '-')}", value) for name, value in values.items()]


def _command(args, config, backend):
    """The full command of this run: every measured setting, the output and the doc."""
    names = ("vocab_size", "embedding_dim", "compression", "batch_size", "sequence_length",
             "steps", "repeats", "seed")
    flags = [("--backend", backend)] + _flags(**{n: config[n] for n in names})
    return output.command("train", flags, args)


class _BackendAction(argparse.Action):
    """Stores `--backend` and, before Keras is imported, sets `KERAS_BACKEND`."""

    def __call__(self, parser, namespace, values, option_string=None):
        # Keras reads the variable once, at its first import, and the command
        # line imports Keras only after parsing: set now, this process runs
        # on the requested backend. Where Keras is already imported, `run`
        # measures in a child process instead.
        if "keras" not in sys.modules:
            os.environ["KERAS_BACKEND"] = values
        setattr(namespace, self.dest, values)


def _backend_from_args(args):
    """The backend to measure on; a `ValueError` if its package is missing."""
    import keras

    backend = getattr(args, "backend", None) or keras.backend.backend()
    if backend not in BACKENDS:
        raise ValueError(
            f"Expected `backend` to be one of {sorted(BACKENDS)}, received: backend={backend!r}"
        )
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        raise ValueError(
            f"Expected `backend` to be a backend this Python can import, received: "
            f"backend={backend!r} (no `{BACKENDS[backend]}` package in {sys.executable}); "
            f"run the command with a Python that has it"
        )
    return backend


def _measure_in_subprocess(backend, config):
    """`measure(**config)` in a child process of this Python with `KERAS_BACKEND=backend`.

    Keras cannot switch backends once imported; the child imports it afresh.
    Its output (warnings, errors) goes to this process's terminal.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "results.json")
        code = (
            "import sys\n"
            "from keras_lowrank.benchmarks import training_cost\n"
            "training_cost._measure_to_file(sys.argv[1], sys.argv[2])\n"
        )
        env = dict(os.environ, KERAS_BACKEND=backend)
        completed = subprocess.run(
            [sys.executable, "-c", code, json.dumps(config), path], env=env, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"The measurement on backend {backend!r} failed in its child process "
                f"(exit status {completed.returncode}); its error is printed above."
            )
        with open(path) as f:
            return json.load(f)


def _measure_to_file(config_json, path):
    """Entry point of the child process of `_measure_in_subprocess`."""
    with open(path, "w") as f:
        json.dump(measure(**json.loads(config_json)), f)
