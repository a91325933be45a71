"""`compress()`: the measured best recipe as one call, to a byte budget.

Given a trained model, training and validation data and a byte budget for its
embedding tables, `compress` plans the candidate recipes that fit (every
table kind: vocabulary pruning, low rank with plain or frequency-weighted
SVD, codebooks, int8/int4 storage and their stacks; `planner`), compares them
by distilled fine-tunes from the untouched input model in a successive-halving
search (`search`), puts the finalists in their stored form, scores them on
validation data only and returns the best one with a `CompressionReport`.

This module conducts: option checks (`options`), data plumbing and id probes
(`data`), planning (`planner`) and the search (`search`) each live in their
own module; it must not decompose tables, count bytes or walk models itself
(decomposition, `layers.table_layout`, surgery), and test data never enters.
"""

import dataclasses
import math
import time

import keras
import numpy as np

from keras_lowrank._keras_private import flatten_layers
from keras_lowrank.compression import data as data_lib
from keras_lowrank.compression import embedding_objective
from keras_lowrank.compression import fidelity as fidelity_lib
from keras_lowrank.compression import options as options_lib
from keras_lowrank.compression import other_layers as other_layers_lib
from keras_lowrank.compression import planner
from keras_lowrank.compression import search
from keras_lowrank.compression.pruning import kept_ids
from keras_lowrank.compression.pruning import lookup_of
from keras_lowrank.compression.pruning import prune_vocabulary
from keras_lowrank.compression.pruning import vocabulary_layers
from keras_lowrank.compression.report import CandidateResult
from keras_lowrank.compression.report import CompressionReport
from keras_lowrank.layers import table_kinds
from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import table_bytes
from keras_lowrank.surgery import compile_like
from keras_lowrank.surgery import copy_model
from keras_lowrank.surgery import find_embeddings
from keras_lowrank.surgery import replace_layers
from keras_lowrank.surgery.factorize_embeddings import not_a_vocabulary_reason
from keras_lowrank.surgery.replace import fresh_metrics
from keras_lowrank.surgery.replace import select_layers

# Cosine decay with warm restarts from 1e-2 down to 1e-4, one period per
# epoch (as the reproduction's schedule study ran it, `t_mul=1`: the best
# mean dev accuracy there, ahead of CALR; docs/reproduction.md), and a
# restart at every rung of the search, so that every score is taken at the
# bottom of a period (`search.CosineRestartsAt`).
_PEAK_LEARNING_RATE = 1e-2
_FLOOR_LEARNING_RATE = 1e-4
# Pretrained transformers (any model holding attention layers) lose what they
# learned at 1e-2: their fine-tunes live around 1e-5 to 1e-4. Same shape of
# schedule, a hundred times lower.
_ATTENTION_PEAK_LEARNING_RATE = 1e-4
_ATTENTION_FLOOR_LEARNING_RATE = 1e-6

_DIVERGED = search.DIVERGED


def compress(
    model,
    train_data,
    validation_data,
    *,
    size=None,
    max_bytes=None,
    max_model_bytes=None,
    layer_names=None,
    return_report=False,
    **options,
):
    """Compresses a model's embedding tables to a byte budget, best recipe first.

    The recipe is searched, not fixed: every family measured in the
    reproduction is sized to the budget at several splits of it between
    vocabulary rows, rank and stored precision (see
    `keras_lowrank.compression.planner`):

    - low rank over the whole vocabulary (plain or frequency-weighted SVD,
      token counts taken from `train_data`), factors in float32/int8/int4;
    - vocabulary pruning to the most frequent ids + low rank, at several
      ranks, factors in float32/int8/int4;
    - vocabulary pruning alone, rows in float32 or Keras' int8/int4;
    - codebook tables (`keras_lowrank.CodebookEmbedding`: product
      quantization, codes learned during the fine-tune) over the whole
      vocabulary or its most frequent ids, codebooks in float32 or int8;
    - codebook tables over the whole vocabulary with exact rows: what the
      codebook leaves of the budget buys int8 rows for the ids its codes
      serve worst (`CodebookEmbedding(exact_rows=...)`).

    A cheap proxy orders the recipes within each family; `candidates`
    recipes, the families taking turns, enter a successive-halving search:
    each is built and fine-tuned with distillation from the input model
    (cosine decay with warm restarts, one period per epoch, the schedule
    found best in the reproduction's study, restarted at every rung so that
    each score is taken at the bottom of a period) for a short part of an
    epoch and scored on `validation_data`; the better half trains on for
    three times as long, and so on until two finalists have trained
    `epochs` epochs (`keras_lowrank.compression.search.rung_plan`: 12
    recipes and 5 epochs train 12 to 5/27 epoch, 6 to 5/9, 3 to 5/3 and 2
    to 5, 14.4 epochs in all). Every recipe is also scored as built, before
    any fine-tune, and that start ranks it when no fine-tune beats it (a
    fine-tune that diverges stops and keeps its best weights, said in
    `report.notes`). Each finalist's weights are then the mean of its last
    rung's checkpoints (`checkpoint="average"`: stochastic weight averaging
    over the ends of its cosine periods, rather than the checkpoint that
    happened to score best on validation data, whose score is the luckiest
    of many), put in their stored form (quantized, codes frozen) and scored
    again; the best score wins (ties: fewer bytes).

    Bytes are the stored bytes of the returned tables (codes, scales, zero
    points, id remap tables; `keras_lowrank.compression.table_bytes`).

    The input model is never changed (it is the teacher). The result has the
    class of the input, keeps its input pipeline (ids, or raw text when the
    model holds its `TextVectorization`), is compiled like the input (same
    loss and metric objects, fresh optimizer; an uncompiled input gives a
    result compiled with `loss`, `metrics` and Adam), trains, saves and loads as
    `.keras`, and exports with `keras_lowrank.export_tflite`.

    Args:
        model: A trained, built, single-output `keras.Model` with at least
            one uncompressed `keras.layers.Embedding`. Compiled, or pass
            `loss=`.
        train_data: What `model.fit` accepts and can be read several times:
            `(x, y)` or `(x, y, sample_weight)` arrays (dense; finite sample
            weights), a finite `tf.data.Dataset` or a
            `keras.utils.PyDataset` (batched), with at least one example.
            Python generators and iterators are refused (they are used up by
            one reading); datasets are read to their end, so a repeated one
            must be cut (`dataset.repeat().take(n)`). Labels must be finite,
            and class ids in `[0, classes)` for a sparse categorical loss.
            For a sentence encoder, inputs only (an array, a dict of arrays
            such as KerasHub's `token_ids`/`padding_mask`, raw texts for a
            model with its preprocessor, or a dataset of input batches):
            see the `objective` option.
        validation_data: The same kinds; the only data used to choose.
        size: Budget as a fraction in (0, 1) of the float32 bytes of the
            selected tables. Exactly one of `size`, `max_bytes` and
            `max_model_bytes`.
        max_bytes: Budget in bytes (a positive integer) for those tables.
        max_model_bytes: Budget in bytes for the whole model: every weight
            it stores, as `report.model_bytes` counts them. The tables get
            what the other weights leave (said in `report.notes`); a budget
            those alone exceed is a `ValueError` naming their bytes. The
            other layers keep their weights unless `other_layers` allows
            Keras' quantization of them.
        layer_names: `None` (every vocabulary `Embedding`: segment/type and
            position tables are not compressed, said in `report.notes`), a
            name or a list of names.
        return_report: If `True`, return `(model, report)`.
        **options: Budget and training options:
            `epochs` (5: what the finalists train) and `candidates` (12:
            recipes entering the search): the fine-tune budget;
            `batch_size` (64, for arrays); `learning_rate` (a float or a
            `LearningRateSchedule`; default: cosine restarts 1e-2 -> 1e-4
            per epoch, or 1e-4 -> 1e-6 for models holding attention layers
            such as KerasHub transformers); `temperature` (2.0) and `alpha` (0.5) of the
            distillation; `loss` and `metrics` when the model is not
            compiled (or to override); `monitor` (the validation metric
            compared; default: the first compiled metric, else `"loss"`;
            prefer a metric where the model has one: a distilled
            fine-tune raises the validation loss while it raises accuracy,
            so with `"loss"` recipes are ranked mostly by their first
            scores, before most of the fine-tune);
            `checkpoint` (`"average"`: each finalist's weights are the
            mean of its last rung's checkpoints; `"best"`: its
            best-scoring checkpoint, which may be its start);
            `storages` (`("float32", "int8", "int4")`; codebooks use the
            float32 and int8 ones); `kinds` (default every registered kind,
            `keras_lowrank.layers.table_kinds.TABLE_KINDS`: `"low-rank"`,
            `"codebook"`, `"dense"`): the table kinds recipes may use,
            `"dense"` being pruned rows stored whole; `other_layers` (with
            `max_model_bytes` only; default `None`: the layers that are not
            tables keep their weights): Keras quantization modes
            (`("int8",)`, `("int8", "int4")`) the `Dense` and `EinsumDense`
            layers outside the tables may take, with Keras'
            `Model.quantize`, before the fine-tune. Each mode leaves the
            tables its own share of the budget, the recipes of every mode
            take turns in the search, and validation data choose
            (`report.other_layers`). Only layers whose quantization the
            model's config records are quantized (a KerasHub task's
            backbone, not its head), so the result reloads and exports
            to LiteRT (`export_tflite` writes those layers from their
            dequantized kernels; `quantize="int4"` keeps them in int4);
            `objective` (`None`: `"embedding"` when `train_data` holds
            inputs only, else `"classification"`): with `"embedding"`,
            every candidate is fine-tuned to reproduce the input model's
            own output vectors (the cosine distance, or `loss=`, e.g.
            `"mean_squared_error"`; dropout off) and chosen on their mean
            cosine on `validation_data`, with NN@1 agreement and NN@10
            overlap in `report.fidelity`, and the vocabulary is not pruned
            unless `prune=True` (a domain encoder);
            `prune` (`True`:
            allow vocabulary pruning; never of a reversible table that
            computes logits, such as a language model's tied head: said in
            `report.notes`); `oov_id` (the row pruned ids share; default:
            the unknown token of a KerasHub task's tokenizer, else 1);
            `seed` (a non-negative integer); `verbose` (1: a line per
            candidate, 0: silent). Each is checked for type and range.

    Returns:
        The compressed model, or `(model, CompressionReport)`.

    Raises:
        ValueError: for bad arguments or data (empty, infinite, ragged, an
            iterator, non-finite sample weights, labels or ids out of
            range), a model without `loss` and no `loss=`, a multi-output
            or already compressed model, a budget below the smallest recipe
            (the message gives the smallest feasible `size`), or when every
            candidate failed (each one's reason; a candidate whose fine-tune
            leaves non-finite weights or a non-finite score fails).

    Example:

    ```python
    small, report = keras_lowrank.compress(
        model, (x_train, y_train), (x_val, y_val), size=0.05, return_report=True)
    print(report)
    small.save("small.keras")
    ```

    References:
        - [Acharya et al., 2019. Online Embedding Compression for Text
          Classification using Low Rank Matrix Factorization](
          https://arxiv.org/abs/1811.00641)
        - [Hinton et al., 2015. Distilling the Knowledge in a Neural
          Network](https://arxiv.org/abs/1503.02531)
        - [Izmailov et al., 2018. Averaging Weights Leads to Wider Optima
          and Better Generalization](https://arxiv.org/abs/1803.05407)
    """
    start = time.perf_counter()
    opts = options_lib.check_options(options)
    objective = opts["objective"] or (
        "embedding" if embedding_objective.holds_inputs_only(train_data) else "classification")
    given_loss = opts["loss"]
    if objective == "embedding":
        loss, metrics = embedding_objective.loss_and_metrics()
        opts["loss"] = given_loss or loss
    options_lib.check_model(model, opts["loss"])
    options_lib.check_budget(size, max_bytes, max_model_bytes, opts["other_layers"])
    options_lib.check_layer_names(layer_names)
    options_lib.check_bool(return_report, "return_report")
    notes = []
    if objective == "embedding":
        # No labels: every candidate learns the input model's own vectors.
        train_data = embedding_objective.with_targets(
            model, embedding_objective.inputs_of(train_data, "train_data"), opts["batch_size"])
        validation_data = embedding_objective.with_targets(
            model, embedding_objective.inputs_of(validation_data, "validation_data"), opts["batch_size"])
        opts["metrics"], opts["monitor"], opts["alpha"] = metrics, embedding_objective.MONITOR, 0.0
        fine_tune_loss = "cosine" if given_loss is None else f"loss {_loss_name(given_loss)}"
        notes.append("objective 'embedding': candidates fine-tuned to the input model's output vectors "
                     f"({fine_tune_loss}, dropout off), chosen on their mean cosine to them on `validation_data`")
        if opts["prune"] is None:
            opts["prune"] = False
            notes.append("vocabulary not pruned (an encoder keeps every token): pass prune=True for a domain "
                         "encoder")
        elif opts["prune"]:
            notes.append("pruning allowed (a domain encoder): ids unseen in `train_data` may share the OOV row")
    elif opts["prune"] is None:
        opts["prune"] = True
    loss, metrics = _loss_and_metrics(model, opts)
    classes, ignore_class = data_lib.class_count(model, loss)
    # A model's own preprocessor may take ragged inputs; the model proper does not.
    has_preprocessor = callable(getattr(model, "preprocessor", None))
    for name, value in (("train_data", train_data), ("validation_data", validation_data)):
        data_lib.check_data(value, name, classes=classes, ignore_class=ignore_class, allow_ragged=has_preprocessor)

    tables = _selected_tables(model, layer_names, notes)
    # The note matters only where ids may be pruned.
    opts["oov_id"] = _oov_id(model, opts["oov_id"], notes if opts["prune"] else [])
    # A KerasHub task applies its preprocessor in fit/evaluate/predict, not
    # when called: the distillation calls both models, so it trains on
    # preprocessed inputs, while scores go through `evaluate` on `validation_data`.
    train_data = data_lib.preprocessed(model, train_data, opts["batch_size"], notes)
    # An untied reversible table stores a second table for its logits: both count.
    float32_bytes = sum(TableLayout.of(layer).float32_bytes() for _, layer in tables)
    other_plans = {None: None}
    if size is not None:
        budgets, received = {None: int(math.floor(size * float32_bytes))}, f"size={size!r}"
    elif max_bytes is not None:
        budgets, received = {None: int(max_bytes)}, f"max_bytes={max_bytes!r}"
    else:
        budgets, other_plans, received = _table_shares_of_model_budget(
            model, tables, max_model_bytes, opts["other_layers"], notes)

    # Plan every table with its share of the budget (proportional to its
    # float32 bytes), before any training, so an infeasible budget fails
    # fast; once for each way of storing the other layers.
    lookups = vocabulary_layers(model)
    logits = {path: _computes_logits(model, path, layer, train_data, notes) for path, layer in tables}
    prunable = {path: opts["prune"] and _prunable(path, layer, opts["oov_id"], logits[path], notes)
                for path, layer in tables}
    counts = {}
    for path, layer in tables:
        counts[path] = data_lib.token_counts(model, path, layer, train_data, notes)
        if not has_preprocessor:
            # A preprocessor's tokenizer numbers ids within its own vocabulary.
            data_lib.check_ids(model, path, layer, validation_data, "validation_data")
    planned = {}
    for other_mode, budget in budgets.items():
        plans = {}
        for path, layer in tables:
            share = int(budget * TableLayout.of(layer).float32_bytes() / float32_bytes)
            plans[path] = _plan_table(layer, share, counts[path], lookup_of(lookups, layer), opts, prunable[path],
                                      logits=logits[path] is not False)
        if all(plan["ranked"] for plan in plans.values()):
            planned[other_mode] = plans
        elif len(budgets) > 1:
            notes.append(f"{other_layers_lib.describe(other_mode)}: the {budget:,} B they leave fit no recipe "
                         "of the tables")
    if not planned:
        _raise_no_recipe(tables, max(budgets.values()), float32_bytes, received, prunable, logits, opts)
    plans = next(iter(planned.values()))
    count = opts["candidates"]
    by_mode = []
    for other_mode, mode_plans in planned.items():
        chosen = [planner.choose_candidates(mode_plans[path]["ranked"], count) for path, _ in tables]
        by_mode.append([
            ({path: picks[min(i, len(picks) - 1)] for (path, _), picks in zip(tables, chosen)}, other_mode)
            for i in range(max(len(picks) for picks in chosen))
        ])
    # The ways of storing the other layers take turns, as families do.
    candidates = [queue[depth] for depth in range(max(map(len, by_mode))) for queue in by_mode
                  if depth < len(queue)][:count]
    combos = [combo for combo, _ in candidates]
    other_modes = [other_mode for _, other_mode in candidates]

    if opts["learning_rate"] is None:
        peak, floor = _default_learning_rates(model)
        notes.append(f"fine-tune learning rate: cosine restarts {peak:g} -> {floor:g}, one period per epoch "
                     "and per rung"
                     + (" (attention layers found: a pretrained transformer's rates)"
                        if peak == _ATTENTION_PEAK_LEARNING_RATE else ""))
    monitor, mode, input_score = _input_score(model, loss, metrics, validation_data, opts)
    rungs = search.rung_plan(len(combos), opts["epochs"]) if opts["epochs"] > 0 else []
    budget = max(budgets[m] for m in planned)
    _say(opts, f"compress: {len(combos)} recipe(s) for {budget:,} B ({budget / float32_bytes:.2%} of "
               f"{float32_bytes:,} B float32"
               + (f"; {len(planned)} ways of storing the other layers" if len(planned) > 1 else "")
               + f"); input model val {monitor} {input_score:.4f}"
               + (f"; search: {_describe_rungs(rungs)}" if len(rungs) > 1 else ""))

    was_trainable = model.trainable
    try:
        results, best, best_model = _search(model, combos, [other_plans[m] for m in other_modes], plans, rungs,
                                            train_data, validation_data, loss, metrics, monitor, mode, opts,
                                            objective, max_model_bytes)
    finally:
        model.trainable = was_trainable
    if best is None:
        raise ValueError(
            "Every candidate failed: " + "; ".join(f"{r.description}: {r.error}" for r in results)
        )
    if best.diverged_at is not None:
        notes.append(f"the chosen recipe's fine-tune diverged after {best.diverged_at:.3g} epoch(s) (try a lower "
                     f"`learning_rate`): its best weights before, from {best.best_epoch:.3g} epoch(s), were kept")
    if getattr(model, "compiled", False):
        compile_like(best_model, model)
    else:
        best_model.compile(optimizer="adam", loss=loss, metrics=metrics)
    report = CompressionReport(
        rungs=[dataclasses.asdict(rung) for rung in rungs],
        # One counter for every stored byte: `table_bytes` of the whole model.
        model_bytes=table_bytes(best_model),
        input_model_bytes=table_bytes(model),
        embedding_bytes=best.embedding_bytes,
        float32_embedding_bytes=float32_bytes,
        budget_bytes=budgets[best.other_layers],
        recipe=best.recipe,
        other_layers=best.other_layers,
        candidates=results,
        monitor=monitor,
        mode=mode,
        input_score=input_score,
        score=best.score,
        objective=objective,
        fidelity=best.fidelity,
        seconds=time.perf_counter() - start,
        notes=notes,
    )
    if return_report:
        return best_model, report
    return best_model


def embedding_bytes(model, layer_names=None):
    """Bytes stored by a model's embedding tables (`table_bytes` of each)."""
    found = find_embeddings(model, include_factorized=True)
    if layer_names is not None:
        names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
        found = [(p, l) for p, l in found if p in names or l.name in names]
    return sum(table_bytes(layer) for _, layer in found)


def _plan_table(layer, budget, counts, lookup, opts, prune, logits):
    V, d = int(layer.input_dim), int(layer.output_dim)
    oov_id = opts["oov_id"]

    def kept_rows(rows, selection):
        return kept_ids(V, rows, counts=counts if selection == "counts" else None, oov_id=oov_id)

    def needs_remap(rows, selection):
        if lookup is not None:
            return False
        kept = kept_rows(rows, selection)
        return not np.array_equal(kept, np.arange(len(kept)))

    # Pruning by counts may need a remap table; keeping the first ids never
    # does and is what frequency-ordered vocabularies want: both compete.
    recipes = planner.plan_recipes(
        V, d, budget, storages=opts["storages"], prune=prune, needs_remap=needs_remap,
        selections=("first", "counts") if counts is not None else ("first",),
        untied_reverse=TableLayout.of(layer).untied_reverse,
        # A tied head's logits need a kind with a reversible form.
        logits=logits,
        kinds=opts["kinds"],
        # No token counts: plain SVD, and unweighted k-means for codebooks.
        weighted=counts is not None,
    )
    weights = (counts if counts is not None else np.zeros(V)) + 1.0
    table = keras.ops.convert_to_numpy(layer.embeddings)
    ranked = planner.rank_recipes(recipes, table, kept_rows, weights, oov_id=oov_id)
    return {"ranked": ranked, "counts": counts, "kept_rows": kept_rows}


def _computes_logits(model, path, layer, train_data, notes):
    """Whether the model calls a table with `reverse=True` (True, False, or None: unknown).

    A reversible table that computes logits (a language model's tied head,
    called by the task graph or inside a head layer) must keep every row and
    a kind with a reversible twin. Whether it does is seen by running the
    model on one batch of `train_data`; a model that cannot be run so is
    taken to (the note says so).
    """
    if not table_kinds.is_reversible(layer):
        return False
    try:
        calls = data_lib.forward_calls(model, layer, train_data)
    except Exception:  # noqa: BLE001 - any failure: unknown, said in the report
        calls = None
    if not calls:
        notes.append(f"'{path}' kept whole, low rank or dense: running the model on one batch of `train_data` did "
                     "not show whether it computes logits with this reversible table")
        return None
    reverse = any(calls)
    if reverse:
        notes.append(f"'{path}' not pruned and no codebook: the model computes logits over its vocabulary with "
                     "it (reverse=True)")
    return reverse


def _may_prune(model, path, layer, train_data, oov_id, notes):
    """Whether pruning recipes may be planned for a table (else a note says why)."""
    return _prunable(path, layer, oov_id, _computes_logits(model, path, layer, train_data, notes), notes)


def _prunable(path, layer, oov_id, computes_logits, notes):
    """`_may_prune` once `_computes_logits` is known."""
    if oov_id >= layer.input_dim:
        notes.append(f"'{path}' not pruned: oov_id={oov_id} is no id of its {layer.input_dim} rows")
        return False
    return computes_logits is False


def _oov_id(model, requested, notes):
    """`requested`, else the unknown token of a KerasHub task's tokenizer, else 1."""
    if requested is not None:
        return int(requested)
    tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    token = getattr(tokenizer, "oov_token", None)
    if token is not None and callable(getattr(tokenizer, "token_to_id", None)):
        try:
            oov_id = int(tokenizer.token_to_id(token))
        except (KeyError, ValueError, TypeError):
            return 1
        notes.append(f"pruned ids share the row of the tokenizer's unknown token {token!r} (id {oov_id})")
        return oov_id
    return 1


def _search(model, combos, other_plans, plans, rungs, train_data, validation_data, loss, metrics, monitor, mode,
            opts, objective="classification", max_model_bytes=None):
    """Builds every recipe, runs the successive-halving search, finalizes the finalists.

    Returns:
        `(results, best result, best model)`; the best is `None` when every
        candidate failed.
    """
    trials, results = {}, {}
    other_modes = [None if other is None else other.mode for other in other_plans]
    # Shuffled full batches every piece (the left-out examples change from
    # pass to pass): one traced train step per student.
    pieces = search.piece_plan(rungs, data_lib.full_batches_per_epoch(train_data, opts["batch_size"]))
    learning_rate = _learning_rate(model, pieces, opts)
    # The finalists' checkpoints: those of the last rung.
    average_after = rungs[-2].epochs if len(rungs) > 1 else 0.0
    # Every student is built before any trial starts: a trial's distiller
    # freezes the teacher, and a copy of a frozen model holds variables that
    # `trainable = True` no longer makes trainable.
    students, dropout = {}, {}
    for index, combo in enumerate(combos):
        started = time.perf_counter()
        if opts["seed"] is not None:
            keras.utils.set_random_seed(opts["seed"])
        try:
            student = _build(model, combo, plans, opts, other_plans[index])
            # The evaluator of every rung. Eager: tracing a graph for each of
            # the search's students costs more than the few batches it scores.
            # Fresh metric objects: one shared by two compiled models reports
            # the other's result on its first evaluation.
            student.compile(loss=loss, metrics=fresh_metrics(metrics), run_eagerly=True)
            if objective == "embedding":
                # Deterministic targets: the student learns them as it will compute.
                dropout[index] = embedding_objective.without_dropout(student)
        except (ValueError, RuntimeError, TypeError) as error:  # one bad recipe must not end the search
            results[index] = _failed(combo, other_modes[index], search.first_line(error),
                                     time.perf_counter() - started)
            continue
        students[index] = student, time.perf_counter() - started
    for index, (student, seconds) in students.items():
        trials[index] = search.Trial(student, model, train_data, validation_data, monitor, mode, opts,
                                     learning_rate, pieces, average_after=average_after)
        trials[index].seconds += seconds

    def progress(rung_index, index, trial):
        score = "n/a" if trial.best_score is None else f"{trial.best_score:.4f}"
        _say(opts, f"rung {rung_index + 1}/{len(rungs)}, recipe {index + 1}/{len(combos)}: "
                   f"{_description(combos[index], other_modes[index])}: val {monitor} {score} after "
                   f"{trial.epochs:.3g} epoch(s)")

    stopped_fidelity = {}

    def measure_stopped(index, trial):
        # The figures of the weights its score was taken with, before they go.
        try:
            trial.restore_best()
        except RuntimeError:  # no finite weights: nothing to measure
            return
        stopped_fidelity[index] = _fidelity(trial.student, validation_data, opts)

    if rungs:
        finalists, errors = search.successive_halving(
            trials, rungs, mode, on_rung=progress, on_stop=measure_stopped if objective == "embedding" else None)
    else:
        finalists, errors = list(trials), {}
    for index, error in errors.items():
        results[index] = _failed(combos[index], other_modes[index], error, trials[index].seconds, trials[index])
    for index, trial in trials.items():
        if index not in finalists and index not in errors:
            # Stopped by the search: its last rung's score, before storage.
            results[index] = _result(combos[index], other_modes[index], trial, trial.best_score, None, final=False)
            results[index].fidelity = stopped_fidelity.get(index)

    best, best_model = None, None
    for index in finalists:
        trial = trials[index]
        combo = combos[index]
        started = time.perf_counter()
        try:
            score, stored, averaged = _finalize(trial, combo, loss, metrics, monitor, opts, fine_tuned=bool(rungs),
                                                max_model_bytes=max_model_bytes)
        except (ValueError, RuntimeError, TypeError) as error:
            trial.seconds += time.perf_counter() - started
            results[index] = _failed(combo, other_modes[index], search.first_line(error), trial.seconds, trial)
            continue
        trial.seconds += time.perf_counter() - started
        if index in dropout:
            dropout[index]()
        results[index] = _result(combo, other_modes[index], trial, score, stored, final=True, averaged=averaged)
        result = results[index]
        if objective == "embedding":
            result.fidelity = _fidelity(trial.student, validation_data, opts)
        _say(opts, f"final: {result.description} ({stored:,} B): val {monitor} {score:.4f} "
                   f"({result.seconds:.1f} s)")
        if best is None or _better(result, best, mode):
            best, best_model = result, trial.student
        trial.release()
    return [results[i] for i in sorted(results)], best, best_model


def _fidelity(student, validation_data, opts):
    """`fidelity.embedding_fidelity` of a student's validation vectors to the input model's."""
    inputs, targets = validation_data
    vectors = student.predict(inputs, batch_size=max(opts["batch_size"], 256), verbose=0)
    return fidelity_lib.embedding_fidelity(targets, vectors)


def _finalize(trial, combo, loss, metrics, monitor, opts, fine_tuned, max_model_bytes=None):
    """The chosen weights (`checkpoint`), the stored form of every table.

    Returns:
        `(score, stored bytes, checkpoints averaged)`: 0 averaged when the
        best-scoring checkpoint was kept.
    """
    student = trial.student
    averaged = 0
    if fine_tuned:
        # A diverged fine-tune keeps its best weights before it (as the report's note says).
        average = trial.average_weights() if opts["checkpoint"] == "average" and trial.diverged_at is None else None
        if average is None:
            trial.restore_best()
        else:
            student.set_weights(average)
            averaged = trial.averaged
    for path, recipe in combo.items():
        layer = _table(student, path)
        table_kinds.kind_of(layer).finalize(layer, recipe.layout)
    student.compile(loss=loss, metrics=fresh_metrics(metrics), run_eagerly=True)  # its variables changed
    score = search.score_model(student, trial.validation_data, monitor, opts)
    if not math.isfinite(score):
        raise RuntimeError(f"non-finite validation {monitor} or loss: {_DIVERGED}")
    if not search.finite_weights(student):
        raise RuntimeError(f"non-finite weights after the fine-tune: {_DIVERGED}")
    for path, r in combo.items():
        # The planner's prediction and the built layer must agree: one
        # description, one byte count.
        built = TableLayout.of(_table(student, path))
        if built.stored_bytes() != r.layout.stored_bytes() or table_bytes(_table(student, path)) != (
            r.layout.stored_bytes()
        ):
            raise RuntimeError(f"table '{path}' stores {built.describe()}, planned {r.layout.describe()}")
    if max_model_bytes is not None and table_bytes(student) > max_model_bytes:
        raise RuntimeError(f"the model stores {table_bytes(student):,} B, over max_model_bytes={max_model_bytes}")
    stored = sum(table_bytes(_table(student, path)) for path in combo)
    return score, stored, averaged


def _description(combo, other_mode=None):
    return "; ".join(
        (f"{path}: " if len(combo) > 1 else "") + recipe.describe() for path, recipe in combo.items()
    ) + ("" if other_mode is None else f"; {other_layers_lib.describe(other_mode)}")


def _result(combo, other_mode, trial, score, stored, final, averaged=0):
    planned = sum(r.layout.stored_bytes() for r in combo.values())
    return CandidateResult(
        {path: r.to_dict() for path, r in combo.items()}, _description(combo, other_mode),
        planned if stored is None else stored, score, trial.best_epochs, trial.seconds,
        rung_scores=list(trial.scores), epochs=trial.epochs, final=final,
        steps=trial.steps, diverged_at=trial.diverged_at, other_layers=other_mode, averaged=averaged,
    )


def _failed(combo, other_mode, message, seconds, trial=None):
    planned = sum(r.layout.stored_bytes() for r in combo.values())
    return CandidateResult(
        {path: r.to_dict() for path, r in combo.items()}, _description(combo, other_mode), planned, None, 0,
        seconds, message,
        rung_scores=list(trial.scores) if trial is not None else [],
        epochs=trial.epochs if trial is not None else 0.0,
        steps=trial.steps if trial is not None else 0,
        other_layers=other_mode,
    )


def _build(model, combo, plans, opts, other=None):
    """The student of one recipe: pruned, each table rebuilt in its kind, the other layers stored as asked."""
    student = None
    for path, recipe in combo.items():
        layout = recipe.layout
        if layout.pruned:
            counts = plans[path]["counts"] if recipe.selection == "counts" else None
            student = prune_vocabulary(
                student or model, layout.rows, counts=counts, layer_names=[path], oov_id=opts["oov_id"]
            )
    student = student or copy_model(model)
    # The teacher is frozen while distilling; its copies must not be.
    student.trainable = True
    replacements = {}
    for path, recipe in combo.items():
        layout = recipe.layout
        kind = table_kinds.TABLE_KINDS[layout.kind]
        if kind.build is None:
            continue
        row_weights = None
        if recipe.weighting == "frequency" and plans[path]["counts"] is not None:
            counts = plans[path]["counts"]
            kept = plans[path]["kept_rows"](layout.rows, recipe.selection) if layout.pruned else slice(None)
            row_weights = counts[kept] + 1.0
        dense = table_kinds.stored_table(_table(student, path))
        try:
            new = kind.build(dense, layout, row_weights=row_weights, seed=opts["seed"] or 0)
        except ValueError as error:
            raise ValueError(f"Cannot build the {layout.kind} table of '{path}': {search.first_line(error)}") from error
        replacements[id(dense)] = new
    if replacements:
        # The student is a fresh copy: its tables are replaced in place.
        student = replace_layers(student, replacements)
    # Quantized before the fine-tune, so that the tables and every float
    # weight left learn around the other layers' stored weights.
    if other is not None:
        other_layers_lib.quantize_other_layers(student, other)
    return student


def _table_shares_of_model_budget(model, tables, max_model_bytes, other_modes, notes):
    """`({mode: table budget}, {mode: OtherLayersPlan}, received)` for a whole-model budget.

    The tables get what the other weights leave: as they are, and stored in
    each of `other_modes` (Keras' quantization of the other layers) when
    the user allows it. Modes that leave nothing are left out (a note says
    so); when none leaves anything, the error names the other weights' bytes.
    """
    received = f"max_model_bytes={max_model_bytes!r}"
    budgets, stored, other_plans = {}, {}, {}
    for mode in (None, *(other_modes or ())):
        other = other_layers_lib.plan(model, tables, mode)
        stored[mode], other_plans[mode] = other.bytes, other
        if other.left_out:
            notes.append(f"other_layers={mode!r}: {', '.join(other.left_out)} kept as they are (the model's config "
                         "would not record their quantization, so a .keras file could not load them)")
        if mode is not None and not other.quantized:
            notes.append(f"other_layers={mode!r}: no Dense or EinsumDense layer outside the tables to quantize")
            continue
        budget = max_model_bytes - stored[mode]
        if budget < 1:
            notes.append(f"whole-model budget {max_model_bytes:,} B: the other weights store {stored[mode]:,} B"
                         + (f" as Keras {mode}" if mode else " as they are") + ", more than the budget")
        else:
            budgets[mode] = budget
            notes.append(f"whole-model budget {max_model_bytes:,} B: the other weights store {stored[mode]:,} B"
                         + (f" as Keras {mode}" if mode else "") + f", leaving {budget:,} B for the tables")
    if not budgets:
        least = min(stored.values())
        hint = "" if other_modes else " (allow Keras' quantization of them with other_layers=('int8', 'int4'))"
        raise ValueError(
            f"`max_model_bytes` cannot be met by compressing the embedding tables: the model's other weights "
            f"alone store {least:,} bytes{hint}. Received: {received}"
        )
    return budgets, other_plans, received


def _raise_no_recipe(tables, budget, float32_bytes, received, prunable, logits, opts):
    """The `ValueError` when no recipe of some table fits `budget`: too small a table, or too small a budget."""
    smallest = {
        p: planner.smallest_recipe_bytes(l.input_dim, l.output_dim, storages=opts["storages"],
                                         prune=prunable[p], untied_reverse=TableLayout.of(l).untied_reverse,
                                         logits=logits[p] is not False, kinds=opts["kinds"])
        for p, l in tables
    }
    too_small = [(p, l) for p, l in tables if smallest[p] is None]
    if too_small:
        listing = "; ".join(f"'{p}' ({l.input_dim}x{l.output_dim})" for p, l in too_small)
        raise ValueError(
            f"Embedding table(s) {listing} too small to compress: no low-rank layout stores fewer bytes "
            f"and pruning needs more than {planner.MIN_ROWS} rows. Leave them out with `layer_names`. "
            f"Received: {received}"
        )
    total = sum(smallest.values())
    raise ValueError(
        f"No recipe fits the budget of {budget:,} bytes for the embedding tables "
        f"({float32_bytes:,} bytes as float32): the smallest feasible is {total:,} bytes, "
        f"size={total / float32_bytes:.6f}. Received: {received}"
    )


def _learning_rate(teacher, pieces, opts):
    learning_rate = opts["learning_rate"]
    if learning_rate is None:
        peak, floor = _default_learning_rates(teacher)
        learning_rate = search.CosineRestartsAt(peak, floor, [steps for _, steps in pieces] or [1])
    return learning_rate


def _describe_rungs(rungs):
    return ", ".join(f"{rung.trials} to {rung.epochs:.3g} epoch(s)" for rung in rungs) + (
        f" ({search.epoch_units(rungs):.3g} epochs in all)"
    )


def _input_score(model, loss, metrics, validation_data, opts):
    """`(monitor, mode, score)` of the input model, evaluated through a copy.

    The copy keeps the input's own compile state (optimizer, traced
    functions) exactly as it was.
    """
    evaluator = copy_model(model)
    evaluator.compile(loss=loss, metrics=fresh_metrics(metrics))
    logs = evaluator.evaluate(**data_lib.fit_arguments(validation_data, opts["batch_size"]), verbose=0, return_dict=True)
    monitor = opts["monitor"]
    if monitor is None:
        names = [name for name in logs if name != "loss"]
        monitor = names[0] if names else "loss"
    if monitor not in logs:
        raise ValueError(f"Expected `monitor` to be one of the validation logs {sorted(logs)}, received: monitor={monitor!r}")
    lower = monitor.lower()
    mode = "min" if ("loss" in lower or "error" in lower or "entropy" in lower) else "max"
    return monitor, mode, float(logs[monitor])


def _better(result, best, mode):
    if result.score == best.score:
        return result.embedding_bytes < best.embedding_bytes
    return result.score > best.score if mode == "max" else result.score < best.score


def _loss_name(loss):
    if isinstance(loss, str):
        return f"'{loss}'"
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__


def _loss_and_metrics(model, opts):
    from keras_lowrank import _keras_private

    loss = opts["loss"] if opts["loss"] is not None else getattr(model, "loss", None)
    metrics = opts["metrics"]
    if metrics is None:
        metrics = _keras_private.compiled_metrics(model)[0]
    return loss, metrics


def _default_learning_rates(model):
    """(peak, floor) of the default schedule: lower for attention models."""
    if any(isinstance(layer, keras.layers.MultiHeadAttention) for layer in flatten_layers(model)):
        return _ATTENTION_PEAK_LEARNING_RATE, _ATTENTION_FLOOR_LEARNING_RATE
    return _PEAK_LEARNING_RATE, _FLOOR_LEARNING_RATE


def _selected_tables(model, layer_names, notes):
    found = find_embeddings(model)
    compressed = _compressed_tables(model)

    def within(path, tables):
        return [c for c in tables if path == c or path.startswith(c + "/")]

    if not [path for path, _ in found if not within(path, compressed)]:
        if compressed:
            raise _already_compressed(model, compressed)
        raise ValueError(
            f"Expected `model` to contain a keras.layers.Embedding to compress, found none in model '{model.name}'"
        )
    selected = select_layers(found, layer_names)
    if layer_names is not None:
        named = {c: compressed[c] for path, _ in selected for c in within(path, compressed)}
        if named:
            raise _already_compressed(model, named)
        return selected
    notes.extend(f"'{path}' not compressed: already compressed ({kind})" for path, kind in compressed.items())
    selected = [(path, layer) for path, layer in selected if not within(path, compressed)]
    # Segment/type and position tables are not vocabularies: not compressed
    # (and out of the budget's denominator) unless named.
    kept, skipped = [], []
    for path, layer in selected:
        reason = not_a_vocabulary_reason(path, layer)
        (kept if reason is None else skipped).append((path, layer, reason))
    if not kept:
        listing = "; ".join(
            f"'{path}' ({layer.input_dim}x{layer.output_dim}): {reason}"
            for path, layer, reason in skipped
        )
        raise ValueError(
            f"Nothing to compress: every embedding table of `model` is skipped. Found "
            f"{len(skipped)} table(s): {listing}. Name a table in `layer_names` to compress "
            f"it anyway. Received: model '{model.name}'"
        )
    notes.extend(f"'{path}' not compressed: {reason}" for path, _, reason in skipped)
    return [(path, layer) for path, layer, _ in kept]


def _compressed_tables(model):
    """`{path: description}` of the tables that are already compressed (any kind, pruned or quantized)."""
    out = {}
    for path, layer in find_embeddings(model, include_factorized=True):
        if table_kinds.is_compressed(layer):
            out[path] = f"{type(layer).__name__}, {TableLayout.of(layer).describe()}"
    return out


def _already_compressed(model, compressed):
    listing = "; ".join(f"'{path}' ({kind})" for path, kind in compressed.items())
    return ValueError(
        f"The embedding tables of model '{model.name}' are already compressed: {listing}. "
        "Compress the original model instead"
    )


def _table(model, path):
    found = dict(find_embeddings(model, include_factorized=True))
    return found[path]


def _inner_path(model, path):
    paths = [p for p, _ in find_embeddings(model) if p == path or p.startswith(path + "/")]
    return paths[0] if paths else path


def _say(opts, message):
    if opts["verbose"]:
        print(message, flush=True)
