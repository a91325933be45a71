"""What a reproduction run covers: methods, sizes, schedules and the grid.

The reproduction compares ways of shrinking the embedding table of a trained
text classifier at equal *embedding bytes*. This module names the methods,
parses the schedule specifications used for the fine-tune, and holds the
`ReproduceConfig` that the runner expands into a grid of runs. It must not
train, load data or import TensorFlow.
"""

import dataclasses
import math

# Method names are part of the results.json contract (issue 3): keep them.
#   uncompressed         the trained model, float32 table
#   float16/int8/int4    post-training quantization of the trained table
#                        (Keras' own `Embedding.quantize` for int8/int4)
#   prune+int4           keep the N most frequent training words (rest -> OOV
#                        row), then int4; N chosen to meet the byte budget
#   offline              SVD of the *initial* (pretrained) table, then the
#                        whole task training on the factorized model
#   online               train -> factorize_embeddings -> fine-tune
#   online+int8/+int4    online at the largest rank whose int8/int4 factors
#                        meet the budget; factors quantized after the fine-tune
#   online+distill       online, fine-tuned with distillation from the
#                        uncompressed model's logits
#   online+freq          online with the SVD weighted by training-token counts
#   online+distill+int4  the stack: int4-budget rank, distilled fine-tune,
#                        then int4 lookup / int8 projection
#   online+freq+distill+int4  the stack with the frequency-weighted SVD
#   prune+online         vocabulary pruning, then online on the pruned table
#   prune+online+distill+int4  pruning and the whole stack (for sizes where
#                        low rank alone cannot fit a row in the budget)
#   prune+online+freq+distill+int4  the same with the frequency-weighted SVD
#   uncompressed+finetune  the control: the uncompressed model given the same
#                        distilled fine-tune as `compress` (same epochs,
#                        schedule and teacher), so every drop is measured
#                        against equal training
#   compress             `keras_lowrank.compress(size=...)`: the recipe searched
#                        on dev over every table kind (pruning x rank x
#                        codebooks x storage x weighting)
#   codebook             compress() restricted to codebook tables of every
#                        row (`kinds=("codebook",), prune=False`): learned
#                        product-quantization codes alone
#   prune+codebook       compress() restricted to codebook tables, pruning
#                        allowed (`kinds=("codebook",)`)
#   compress+best        compress() keeping each finalist's best-scoring
#                        checkpoint (`checkpoint="best"`) instead of the
#                        mean of its last rung's
#   compress+loss        compress() ranking recipes and choosing the winner
#                        by the validation loss (`monitor="loss"`) instead
#                        of the validation accuracy
FIXED_SIZE_METHODS = ("uncompressed", "uncompressed+finetune", "float16", "int8", "int4")
SIZED_METHODS = (
    "prune+int4",
    "offline",
    "online",
    "online+int8",
    "online+int4",
    "online+distill",
    "online+freq",
    "online+distill+int4",
    "online+freq+distill+int4",
    "prune+online",
    "prune+online+distill+int4",
    "prune+online+freq+distill+int4",
    "compress",
    "codebook",
    "prune+codebook",
    "compress+best",
    "compress+loss",
)
METHODS = FIXED_SIZE_METHODS + SIZED_METHODS
# Methods that fine-tune a factorized model: the schedule applies to them.
FINETUNED_METHODS = tuple(m for m in SIZED_METHODS if "online" in m)

MODELS = ("dan", "lstm", "cnn")
# Task-training epochs of `ReproduceConfig.quick`: on its 1,500-example TREC
# subsample (24 steps an epoch) the dev accuracy of the DAN levels off after
# about 15 epochs.
QUICK_EPOCHS = 20
DEFAULT_COMPRESSIONS = (0.5, 0.9, 0.95, 0.98, 0.99)
SCHEDULE_FAMILIES = ("calr", "clr", "constant", "cosine-restarts")

# Defaults of each schedule family; a spec such as "calr:max=0.01,decay=0.5"
# overrides some of them. Learning rates are Adam rates. One cycle per epoch
# (`cycle` = epochs per cycle) so that every fine-tune ends near its floor.
SCHEDULE_DEFAULTS = {
    "calr": {"min": 1e-4, "max": 3e-3, "cycle": 1.0, "decay": 0.7},
    "clr": {"min": 1e-4, "max": 3e-3, "cycle": 1.0},
    "constant": {"lr": 1e-3},
    "cosine-restarts": {"min": 1e-4, "max": 3e-3, "cycle": 1.0},
}

# The schedule study (same fine-tune budget for all): a small CALR grid and two
# settings of each other family, every setting chosen on dev, never on test.
CALR_GRID = tuple(
    f"calr:max={peak:g},decay={decay:g}" for peak in (3e-3, 1e-2) for decay in (0.5, 0.8)
)
SCHEDULE_STUDY = CALR_GRID + (
    "clr:max=0.003",
    "clr:max=0.01",
    "constant:lr=0.001",
    "constant:lr=0.003",
    "cosine-restarts:max=0.003",
    "cosine-restarts:max=0.01",
)


def parse_schedule(spec):
    """Parses a schedule spec `family[:key=value,...]` into (family, params).

    Args:
        spec: a string such as `"calr"`, `"constant:lr=0.001"` or
            `"calr:max=0.01,decay=0.5"`.

    Returns:
        `(family, params)` with `params` the family defaults updated by the
        spec (all floats).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"Expected a schedule spec string, received: schedule={spec!r}")
    family, _, rest = spec.strip().partition(":")
    if family not in SCHEDULE_DEFAULTS:
        raise ValueError(
            f"Unknown schedule family {family!r} in schedule={spec!r}; "
            f"expected one of {list(SCHEDULE_FAMILIES)}"
        )
    params = dict(SCHEDULE_DEFAULTS[family])
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, _, value = item.partition("=")
        if key not in params:
            raise ValueError(
                f"Unknown parameter {key!r} in schedule={spec!r}; "
                f"{family} takes {sorted(params)}"
            )
        try:
            params[key] = float(value)
        except ValueError:
            raise ValueError(
                f"Expected a number for {key!r} in schedule={spec!r}, received: {value!r}"
            ) from None
        if not math.isfinite(params[key]) or params[key] <= 0:
            raise ValueError(f"Expected {key} > 0 in schedule={spec!r}, received: {value!r}")
    return family, params


def schedule_family(spec):
    """Returns the family (`calr`, `clr`, ...) of a schedule spec."""
    return parse_schedule(spec)[0]


def size_label(fraction):
    """Formats a fraction of float32 embedding bytes as a short percentage."""
    percent = 100.0 * fraction
    return f"{percent:.3g}%"


@dataclasses.dataclass
class ReproduceConfig:
    """One reproduction grid: what to run and where to write it.

    Attributes:
        datasets: bundled names, data folders or tfds names.
        models: subset of `MODELS`.
        methods: subset of `METHODS`; `uncompressed` is always trained
            (every other method starts from it) and always recorded.
        compressions: compression ratios c in (0, 1); the byte budget of a
            sized method is `(1 - c)` times the float32 embedding bytes.
        seeds: integer seeds; each seed trains its own uncompressed model.
        vectors: `glove50`, `learned300`, or a path to a GloVe/word2vec text
            file, one entry per initial embedding table.
        epochs: task-training epochs (uncompressed and offline).
        finetune_epochs: fine-tune epochs of every online method (the same
            budget for all of them).
        schedules: schedule specs for the fine-tune (see `parse_schedule`).
        output: folder for results.json, results.md and the plots.
        cache: folder for the trained uncompressed models (reused by later
            parts of a split grid); None for `~/.cache/keras_lowrank/reproduce`.
        batch_size: training batch size.
        learning_rate: Adam rate of the task training.
        sequence_length: maximum tokens per text (longer texts are cut).
        max_train: if set, a seeded subsample of the training split (CI).
        temperature, alpha: distillation settings.
        vocab_min_count: words seen fewer times in train are OOV.
        threads: TensorFlow intra-op threads (None: TensorFlow's default).
    """

    datasets: tuple = ("snips",)
    models: tuple = ("dan",)
    methods: tuple = METHODS
    compressions: tuple = DEFAULT_COMPRESSIONS
    seeds: tuple = (0, 1, 2)
    vectors: tuple = ("glove50",)
    epochs: int = 12
    finetune_epochs: int = 5
    schedules: tuple = ("calr",)
    output: str = "reproduce_results"
    cache: str = None
    batch_size: int = 64
    learning_rate: float = 3e-3
    sequence_length: int = 64
    max_train: int = None
    temperature: float = 2.0
    alpha: float = 0.5
    vocab_min_count: int = 1
    threads: int = None

    def __post_init__(self):
        for name in ("datasets", "models", "methods", "compressions", "seeds", "vectors", "schedules"):
            value = getattr(self, name)
            if isinstance(value, (str, int, float)):
                value = (value,)
            value = tuple(value)
            if not value:
                raise ValueError(f"Expected at least one entry in `{name}`, received: {name}=()")
            setattr(self, name, value)
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"Unknown model(s) {unknown}; expected some of {list(MODELS)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"Unknown method(s) {unknown}; expected some of {list(METHODS)}")
        if "uncompressed" not in self.methods:
            self.methods = ("uncompressed",) + self.methods
        for c in self.compressions:
            if not (isinstance(c, (int, float)) and 0 < c < 1):
                raise ValueError(
                    f"Expected every compression ratio in (0, 1), received: compression={c!r}"
                )
        for spec in self.schedules:
            parse_schedule(spec)
        for name in ("epochs", "finetune_epochs", "batch_size", "sequence_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected `{name}` to be a positive integer, received: {name}={value!r}")
        if self.max_train is not None and (not isinstance(self.max_train, int) or self.max_train < 10):
            raise ValueError(f"Expected `max_train` to be an integer >= 10, received: max_train={self.max_train!r}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"Expected `alpha` in [0, 1], received: alpha={self.alpha!r}")
        if self.temperature <= 0:
            raise ValueError(f"Expected `temperature` > 0, received: temperature={self.temperature!r}")

    @classmethod
    def quick(cls, output, **overrides):
        """A CI-sized grid: TREC, DAN, GloVe 50-d, one size, one seed.

        Every method runs once at 90% compression (10% of the bytes), on a
        1,500-example training subsample, in about a minute on two CPU
        cores. The uncompressed model trains for as many epochs as the full
        grid's and more (`QUICK_EPOCHS`, the best dev epoch kept): on the
        subsample an epoch is a few optimizer steps, and an undertrained
        baseline would let every compressed model, fine-tuned on top of it,
        look better than the model it compresses. The fine-tune is one
        epoch.
        """
        settings = dict(
            datasets=("trec",),
            models=("dan",),
            methods=METHODS,
            compressions=(0.9,),
            seeds=(0,),
            vectors=("glove50",),
            epochs=QUICK_EPOCHS,
            finetune_epochs=1,
            schedules=("calr",),
            output=output,
            max_train=1500,
            sequence_length=32,
        )
        settings.update(overrides)
        return cls(**settings)
