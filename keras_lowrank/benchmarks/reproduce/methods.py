"""The compression methods compared by the reproduction, at a byte budget.

Each method starts from the same trained uncompressed model of a *cell*
(dataset x vectors x model x seed) and produces a smaller embedding whose
bytes are measured from the built layer. `plan` turns a method and a size
(fraction of the float32 embedding bytes) into the largest rank and/or
vocabulary that fits, without training anything; `run` carries the plan out
and returns the measured outcome. This module must not loop over the grid,
write files or print (see `runner`).
"""

import dataclasses
import math
import time

import numpy as np

from keras_lowrank.benchmarks.reproduce import budget as B
from keras_lowrank.benchmarks.reproduce.fitting import accuracy
from keras_lowrank.benchmarks.reproduce.fitting import build_schedule
from keras_lowrank.benchmarks.reproduce.fitting import fit_with_dev_selection
from keras_lowrank.benchmarks.reproduce.fitting import steps_per_epoch

EMBEDDING = "embedding"  # the embedding layer's name in keras_lowrank.models
PADDING_ID, OOV_ID, RESERVED = 0, 1, 2
# prune+online methods keep the rank that the unpruned variant would get at
# this many times the budget, and then as many frequent words as fit: about a
# quarter of the vocabulary at every size (a fixed rule, not tuned on test).
PRUNE_RANK_FACTOR = 4
MIN_ROWS = RESERVED + 1


@dataclasses.dataclass
class Plan:
    """What a method stores at one size: rank, rows and factor storage."""

    method: str
    size: float
    budget_bytes: int
    rank: int = None  # None: a dense table
    rows: int = None  # vocabulary rows kept (None: all)
    storage: str = "float32"  # storage of the table or of the factors
    infeasible: str = None  # why nothing fits, or None

    @property
    def key(self):
        """What identifies the trained model: equal keys, equal results."""
        return (self.method, self.rank, self.rows, self.storage)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a fixed sized method does, as configuration of the public API.

    Args:
        prune: keep only the most frequent rows (`prune_vocabulary` semantics,
            with the data's ids renumbered so no remap table is stored).
        low_rank: factorize (`factorize_embeddings`); `False`: a dense table.
        storage: `"float32"`, `"int8"` or `"int4"` (`layer.quantize`).
        weighting: `"frequency"` (row weights = training-token counts + 1)
            or `"none"`.
        distill: fine-tune with `keras_lowrank.Distiller` from the
            uncompressed model.
        offline: factorize before training (the paper's baseline).
    """

    prune: bool = False
    low_rank: bool = True
    storage: str = "float32"
    weighting: str = "none"
    distill: bool = False
    offline: bool = False


# One row per sized method: the method names are labels, never parsed.
RECIPES = {
    "prune+int4": Recipe(prune=True, low_rank=False, storage="int4"),
    "offline": Recipe(offline=True),
    "online": Recipe(),
    "online+int8": Recipe(storage="int8"),
    "online+int4": Recipe(storage="int4"),
    "online+distill": Recipe(distill=True),
    "online+freq": Recipe(weighting="frequency"),
    "online+distill+int4": Recipe(storage="int4", distill=True),
    "online+freq+distill+int4": Recipe(storage="int4", weighting="frequency", distill=True),
    "prune+online": Recipe(prune=True),
    "prune+online+distill+int4": Recipe(prune=True, storage="int4", distill=True),
    "prune+online+freq+distill+int4": Recipe(prune=True, storage="int4", weighting="frequency", distill=True),
}


def plan(method, vocab_size, dim, size):
    """Chooses rank / rows of `method` so its embedding fits `size`.

    Args:
        method: a sized method name (see `config.SIZED_METHODS`).
        vocab_size, dim: shape of the full table.
        size: the byte budget as a fraction of the float32 table bytes.

    Returns:
        A `Plan` (with `infeasible` set when nothing fits).
    """
    V, d = vocab_size, dim
    budget = int(math.floor(size * B.float32_table_bytes(V, d)))
    p = Plan(method, size, budget)
    if method in COMPRESS_METHODS:
        p.storage = "searched"  # compress() chooses rows, rank and storage on dev
        return p
    if method not in RECIPES:
        raise ValueError(f"Unknown sized method {method!r}")
    recipe = RECIPES[method]
    if recipe.prune and not recipe.low_rank:
        p.storage = recipe.storage
        p.rows = B.max_rows_for_bytes(d, budget, recipe.storage)
        if p.rows >= V:
            p.infeasible = f"the whole {recipe.storage} table fits: see {recipe.storage}"
        elif p.rows < MIN_ROWS:
            p.infeasible = "not even the reserved rows fit"
        return p
    if recipe.prune:
        return _plan_pruned_low_rank(p, V, d, recipe.storage)
    p.storage = recipe.storage
    p.rank = B.max_rank_for_bytes(V, d, budget, recipe.storage)
    if p.rank < 1:
        p.infeasible = f"no rank of {recipe.storage} factors fits ({B.low_rank_bytes(V, d, 1, recipe.storage)} B at rank 1)"
    return p


def _plan_pruned_low_rank(p, V, d, storage):
    p.storage = storage
    rank = max(2, B.max_rank_for_bytes(V, d, PRUNE_RANK_FACTOR * p.budget_bytes, storage))

    def rows_for(r):
        return B.max_rows_for_bytes(d, p.budget_bytes, storage, rank=r)

    rows = rows_for(rank)
    # The rank must still save numbers on the pruned table.
    while rank > 1 and rows >= MIN_ROWS and rank > (rows * d - 1) // (rows + d):
        rank -= 1
        rows = rows_for(rank)
    p.rank, p.rows = rank, rows
    if rows >= V:
        p.infeasible = "the unpruned low-rank table fits: see online"
    elif rows < MIN_ROWS:
        p.infeasible = "not even the reserved rows fit"
    return p


class Cell:
    """One dataset x vectors x model x seed, with its trained uncompressed model.

    Args:
        task: the `tasks.Task`.
        model_name: `"dan"`, `"lstm"` or `"cnn"`.
        seed: the seed of this cell.
        config: the `ReproduceConfig`.
        base: the trained uncompressed `keras.Model`.
    """

    def __init__(self, task, model_name, seed, config, base):
        self.task, self.model_name, self.seed, self.config = task, model_name, seed, config
        self.base = base
        self._teachers = {}

    @property
    def vocab_size(self):
        return self.task.vocab_size

    @property
    def dim(self):
        return self.task.embedding_dim

    def clone_base(self):
        """A trainable copy of the uncompressed model (no shared layers)."""
        return clone_with_weights(self.base)

    def teacher(self, rows=None):
        """The frozen teacher for distillation (pruned inputs: pruned teacher)."""
        if rows not in self._teachers:
            model = self.clone_base() if rows is None else self.pruned(rows)[0]
            self._teachers[rows] = model
        return self._teachers[rows]

    def pruned(self, rows):
        """The uncompressed model on a vocabulary of the `rows` most frequent ids.

        Ids are re-numbered: padding and OOV keep 0 and 1, the kept words
        follow by descending training count, every other word maps to OOV.
        Returns `(model, remap)` with `remap[old_id] = new_id`.
        """
        counts = self.task.counts.astype(np.float64)
        words = np.arange(RESERVED, self.vocab_size)
        # Stable order: by count, then by id (the vocabulary's own order).
        order = words[np.argsort(-counts[RESERVED:], kind="stable")]
        kept = np.concatenate([[PADDING_ID, OOV_ID], order[: rows - RESERVED]])
        remap = np.full(self.vocab_size, OOV_ID, dtype=np.int32)
        remap[kept] = np.arange(rows, dtype=np.int32)
        model = _resize_embedding(self.base, kept)
        return model, remap


def clone_with_weights(model):
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    clone.trainable = True
    return clone


def _resize_embedding(model, kept_rows):
    """Copies `model` with its embedding table reduced to `kept_rows`."""
    import keras

    table = np.asarray(model.get_layer(EMBEDDING).get_weights()[0])

    def clone_layer(layer):
        config = layer.get_config()
        if layer.name == EMBEDDING:
            config["input_dim"] = len(kept_rows)
            config.pop("embeddings_initializer", None)
        return layer.__class__.from_config(config)

    new = keras.models.clone_model(model, clone_function=clone_layer)
    for old_layer, new_layer in zip(model.layers, new.layers):
        if new_layer.name == EMBEDDING:
            new_layer.set_weights([table[kept_rows]])
        elif old_layer.weights:
            new_layer.set_weights(old_layer.get_weights())
    new.trainable = True
    return new


def embedding_params(vocab_rows, dim, rank):
    """Logical numbers stored by the table (codes count one each; no scales)."""
    if rank is None:
        return vocab_rows * dim
    return rank * (vocab_rows + dim)


def other_bytes(model):
    """float32 bytes of every weight outside the embedding (reported apart)."""
    return B.variables_bytes(
        [w for layer in model.layers if layer.name != EMBEDDING for w in layer.weights]
    )


def _outcome(model, p, dev, test, **extra):
    from keras_lowrank import table_bytes

    layer = model.get_layer(EMBEDDING)
    out = {
        "rank": p.rank if p is not None else None,
        "vocab_rows": (p.rows if p is not None and p.rows else None),
        "embedding_bytes": table_bytes(layer),
        "other_bytes": other_bytes(model),
        "dev_accuracy": accuracy(model, *dev),
        "test_accuracy": accuracy(model, *test),
    }
    out.update(extra)
    return out


def train_uncompressed(task, model_name, seed, config):
    """Trains the uncompressed model of a cell (dev-selected epoch)."""
    import keras

    from keras_lowrank.benchmarks.reproduce.tasks import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(task, model_name)
    fit = fit_with_dev_selection(
        model,
        task.train,
        task.dev,
        epochs=config.epochs,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
    )
    return model, fit


def run_fixed(cell, method, base_fit=None):
    """The uncompressed model and its post-training quantizations.

    `float16` rounds the trained table to float16 (what float16 storage
    keeps) and counts 2 bytes per entry; `int8`/`int4` call Keras' own
    `Embedding.quantize` and count the variables it stores.
    """
    task = cell.task
    V, d = cell.vocab_size, cell.dim
    if method == "uncompressed+finetune":
        return _run_uncompressed_finetune(cell)
    if method == "uncompressed":
        out = _outcome(cell.base, None, task.dev, task.test)
        out.update(
            epochs=cell.config.epochs,
            best_epoch=base_fit["best_epoch"] if base_fit else None,
            dev_curve=base_fit["dev_curve"] if base_fit else None,
            schedule=f"constant:lr={cell.config.learning_rate:g}",
        )
    else:
        model = cell.clone_base()
        layer = model.get_layer(EMBEDDING)
        if method == "float16":
            table = np.asarray(layer.get_weights()[0])
            layer.set_weights([table.astype(np.float16).astype(np.float32)])
            out = _outcome(model, None, task.dev, task.test)
            out["embedding_bytes"] = B.dense_table_bytes(V, d, "float16")
        else:
            layer.quantize(method)
            out = _outcome(model, None, task.dev, task.test)
        out.update(epochs=0, schedule=None)
    out["embedding_params"] = embedding_params(V, d, None)
    return out


COMPRESS_SCHEDULE = "cosine-restarts:max=0.01"  # compress()'s default fine-tune schedule

# Methods that are `compress()` calls, with the options that make them.
COMPRESS_METHODS = {
    "compress": {},
    "codebook": {"kinds": ("codebook",), "prune": False},
    "prune+codebook": {"kinds": ("codebook",)},
    "compress+best": {"checkpoint": "best"},
    "compress+loss": {"monitor": "loss"},
}


def _run_uncompressed_finetune(cell):
    """The uncompressed model fine-tuned like `compress` fine-tunes its candidates."""
    import keras

    task, config = cell.task, cell.config
    keras.utils.set_random_seed(cell.seed)
    model = cell.clone_base()
    lr = build_schedule(COMPRESS_SCHEDULE, steps_per_epoch(len(task.train[1]), config.batch_size))
    fit = fit_with_dev_selection(
        model, task.train, task.dev, epochs=config.finetune_epochs, learning_rate=lr,
        batch_size=config.batch_size, teacher=cell.teacher(), temperature=config.temperature, alpha=config.alpha,
    )
    out = _outcome(model, None, task.dev, task.test, epochs=config.finetune_epochs, best_epoch=fit["best_epoch"],
                   dev_curve=fit["dev_curve"], schedule=COMPRESS_SCHEDULE)
    out["embedding_params"] = embedding_params(cell.vocab_size, cell.dim, None)
    return out


def run_compress(cell, p):
    """`keras_lowrank.compress` at the plan's size, on the cell's train and dev splits."""
    import keras

    import keras_lowrank

    task, config = cell.task, cell.config
    keras.utils.set_random_seed(cell.seed)
    model, report = keras_lowrank.compress(
        cell.base, task.train, task.dev, size=p.size, return_report=True,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
        epochs=config.finetune_epochs, batch_size=config.batch_size, temperature=config.temperature,
        alpha=config.alpha, seed=cell.seed, verbose=0, **COMPRESS_METHODS[p.method],
    )
    (recipe,) = report.recipe.values()
    layout = recipe["layout"]
    p.rank, p.rows, p.storage = layout.get("rank"), layout["rows"], layout["storage"]
    out = _outcome(model, p, task.dev, task.test, epochs=config.finetune_epochs, schedule=COMPRESS_SCHEDULE,
                   recipe=recipe, candidates=[c.to_dict() for c in report.candidates],
                   compress_seconds=round(report.seconds, 2))
    out["vocab_rows"] = layout["rows"] if layout["rows"] < cell.vocab_size else None
    from keras_lowrank import TableLayout

    out["embedding_params"] = TableLayout.from_dict(layout).params()
    out["search_rungs"] = report.rungs
    return out


def run_sized(cell, p, schedule):
    """Carries out a `Plan` of a sized method; returns the measured outcome."""
    import keras

    if p.method in COMPRESS_METHODS:
        return run_compress(cell, p)

    from keras_lowrank.surgery import factorize_embeddings

    task, config = cell.task, cell.config
    recipe = RECIPES[p.method]
    keras.utils.set_random_seed(cell.seed)
    train, dev, test = task.train, task.dev, task.test
    rows = cell.vocab_size

    if recipe.prune:
        model, remap = cell.pruned(p.rows)
        rows = p.rows
        train, dev, test = ((remap[x], y) for x, y in (train, dev, test))
        if not recipe.low_rank:
            model.get_layer(EMBEDDING).quantize(recipe.storage)
            out = _outcome(model, p, dev, test, epochs=0, schedule=None)
            out["embedding_params"] = embedding_params(rows, cell.dim, None)
            return out
    elif recipe.offline:
        from keras_lowrank.benchmarks.reproduce.tasks import build_model

        # The pretrained table is factorized *before* any task training (a
        # learned table: its random initialization), then the whole training
        # runs on the factorized model with the uncompressed model's budget.
        model = build_model(task, cell.model_name)
        model = factorize_embeddings(model, rank=p.rank)
        fit = fit_with_dev_selection(
            model,
            train,
            dev,
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
        )
        out = _outcome(model, p, dev, test, epochs=config.epochs, best_epoch=fit["best_epoch"],
                       dev_curve=fit["dev_curve"], schedule=f"constant:lr={config.learning_rate:g}")
        out["embedding_params"] = embedding_params(rows, cell.dim, p.rank)
        return out
    else:
        model = cell.clone_base()

    # Online: factorize the trained table, fine-tune with the schedule.
    row_weights = None
    if recipe.weighting == "frequency":
        # Training-token counts of the (possibly pruned) ids, +1 so rows
        # never seen keep a small weight.
        counts = np.bincount(train[0].reshape(-1), minlength=rows).astype(np.float64)
        counts[PADDING_ID] = 0.0
        row_weights = counts + 1.0
    model = factorize_embeddings(model, rank=p.rank, row_weights=row_weights)
    layer = model.get_layer(EMBEDDING)
    energy = None
    if getattr(layer, "factorization", None):
        energy = layer.factorization.get("energy")
    teacher = None
    if recipe.distill:
        teacher = cell.teacher(rows=p.rows if recipe.prune else None)
    lr = build_schedule(schedule, steps_per_epoch(len(train[1]), config.batch_size))
    fit = fit_with_dev_selection(
        model,
        train,
        dev,
        epochs=config.finetune_epochs,
        learning_rate=lr,
        batch_size=config.batch_size,
        teacher=teacher,
        temperature=config.temperature,
        alpha=config.alpha,
    )
    float_dev = fit["dev_accuracy"]
    if p.storage in ("int8", "int4"):
        # Quantized after the fine-tune (Keras' quantize protocol).
        model.get_layer(EMBEDDING).quantize(p.storage)
    out = _outcome(
        model,
        p,
        dev,
        test,
        epochs=config.finetune_epochs,
        best_epoch=fit["best_epoch"],
        dev_curve=fit["dev_curve"],
        schedule=schedule,
        float_dev_accuracy=float_dev,
        energy=None if energy is None else float(energy),
    )
    out["embedding_params"] = embedding_params(rows, cell.dim, p.rank)
    return out


def timed(fn, *args, **kwargs):
    """Runs `fn` and returns `(result, seconds)`."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
