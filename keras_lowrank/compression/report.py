"""`CompressionReport`: what `compress()` tried, what it chose and what it costs.

Plain data and formatting only: it must not import Keras, touch a model or
train anything.
"""

import dataclasses


@dataclasses.dataclass
class CandidateResult:
    """One fine-tuned candidate of `compress()`.

    Args:
        recipe: `{table path: Recipe.to_dict()}`.
        description: a short human description of the recipe.
        embedding_bytes: bytes its tables store (measured on the built model).
        score: its validation score (`monitor`): for a finalist, of its
            stored form (quantized, codes frozen); for a recipe the search
            stopped, its best score before storage.
        best_epoch: epochs of fine-tune (possibly fractional) at its best
            validation score (0: its start, before any fine-tune, scored
            best, or none ran).
        seconds: wall time to build, fine-tune and score it.
        error: why the candidate failed, or `None`.
        rung_scores: its best validation score at the end of each rung it
            ran (the search compares these).
        epochs: epochs of fine-tune it ran in all.
        final: whether it reached the last rung and was scored stored.
        steps: optimizer steps its fine-tune applied.
        fidelity: for the embedding objective, the candidate's
            `keras_lowrank.compression.fidelity.embedding_fidelity` figures
            on the validation inputs (mean and minimum cosine, NN@1
            agreement, NN@10 overlap): a finalist's in its stored form, a
            stopped one's with its best weights; else `None`.
        diverged_at: epochs of fine-tune at which its weights or validation
            scores became non-finite (it stopped there and kept its best
            weights before), or `None`.
        averaged: for a finalist, how many checkpoints of its last rung
            were averaged into its weights (`checkpoint="average"`); 0 when
            its best-scoring checkpoint (`best_epoch`) was kept.
        other_layers: the Keras quantization mode (`"int8"`, `"int4"`) of
            the layers that are not tables, or `None` (kept as they were).
    """

    recipe: dict
    description: str
    embedding_bytes: int
    score: float = None
    best_epoch: int = 0
    seconds: float = 0.0
    error: str = None
    rung_scores: list = dataclasses.field(default_factory=list)
    epochs: float = 0.0
    final: bool = False
    steps: int = 0
    fidelity: dict = None
    diverged_at: float = None
    other_layers: str = None
    averaged: int = 0

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CompressionReport:
    """The outcome of `keras_lowrank.compress`.

    `print(report)` shows the budget, every candidate (bytes, validation
    score) with the chosen one marked, and the input model's score;
    `to_dict()` gives the same as JSON-ready data.

    Args:
        embedding_bytes: bytes the returned model's selected tables store.
        float32_embedding_bytes: bytes of those tables as float32 (the
            reference `size` is a fraction of).
        budget_bytes: the budget the candidates had to fit.
        recipe: the chosen recipe, `{table path: Recipe.to_dict()}`.
        candidates: every `CandidateResult`, in the order tried.
        monitor: the validation quantity compared (`"accuracy"`, `"loss"`...).
        mode: `"max"` or `"min"`: which direction is better.
        input_score: the input model's validation score.
        score: the returned model's validation score.
        seconds: wall time of the whole call.
        notes: anything the caller should know (token counts missing ...).
        rungs: the search's rungs, `[{"trials": n, "epochs": e}]` (empty
            when nothing was fine-tuned).
        model_bytes: bytes every weight of the returned model stores (its
            tables and every other layer): what a user ships.
        input_model_bytes: the same for the input model.
        objective: `"classification"` or `"embedding"` (fine-tuned to the
            input model's output vectors, chosen on their mean cosine).
        fidelity: the chosen model's embedding fidelity figures (embedding
            objective), else `None`.
        other_layers: how the chosen model stores the layers that are not
            tables: `None` (as the input did), or the mode of Keras'
            quantization of its `Dense`/`EinsumDense` layers (`"int8"`,
            `"int4"`; `compress(other_layers=...)`).
    """

    embedding_bytes: int
    float32_embedding_bytes: int
    budget_bytes: int
    recipe: dict
    candidates: list
    monitor: str
    mode: str
    input_score: float
    score: float
    seconds: float
    notes: list = dataclasses.field(default_factory=list)
    rungs: list = dataclasses.field(default_factory=list)
    model_bytes: int = None
    input_model_bytes: int = None
    objective: str = "classification"
    fidelity: dict = None
    other_layers: str = None

    @property
    def size(self):
        """The returned tables' bytes as a fraction of their float32 bytes."""
        return self.embedding_bytes / self.float32_embedding_bytes

    def to_dict(self):
        out = dataclasses.asdict(self)
        out["candidates"] = [c.to_dict() for c in self.candidates]
        out["size"] = self.size
        return out

    def __str__(self):
        lines = [
            f"compress: {self.embedding_bytes:,} B of {self.float32_embedding_bytes:,} B float32 "
            f"({self.size:.2%}; budget {self.budget_bytes:,} B), {self.seconds:.1f} s",
            f"validation {self.monitor}: input {_fmt(self.input_score)} -> compressed {_fmt(self.score)}",
        ]
        if self.model_bytes is not None and self.input_model_bytes:
            lines.append(
                f"whole model: {self.input_model_bytes:,} B -> {self.model_bytes:,} B stored "
                f"({self.model_bytes / self.input_model_bytes:.2%}; the tables are "
                f"{self.embedding_bytes / self.model_bytes:.1%} of it)"
                + (f"; other layers quantized by Keras to {self.other_layers}" if self.other_layers else "")
            )
        if self.fidelity:
            lines.append("embedding fidelity on validation: " + ", ".join(
                f"{name.replace('_', ' ')} {value:.4f}" for name, value in self.fidelity.items() if name != "examples"
            ) + f" ({self.fidelity['examples']} inputs)")
        if len(self.rungs) > 1:
            lines.append("search: " + ", ".join(
                f"rung {i + 1}: {rung['trials']} to {rung['epochs']:.3g} epoch(s)" for i, rung in enumerate(self.rungs)
            ))
        rung_headers = tuple(f"rung {i + 1}" for i in range(len(self.rungs))) if len(self.rungs) > 1 else ()
        # Nearest-neighbour figures of every candidate, for the embedding objective.
        neighbours = tuple(
            (name, key) for name, key in (("NN@1", "nn1_agreement"), ("NN@10", "nn10_overlap"))
            if any(result.fidelity and key in result.fidelity for result in self.candidates)
        )
        header = ("", "candidate", "bytes", *rung_headers, f"val {self.monitor}",
                  *(name for name, _ in neighbours), "epoch", "seconds")
        rows = []
        for result in self.candidates:
            chosen = "*" if (result.recipe, result.other_layers) == (self.recipe, self.other_layers) and (
                result.error is None) else ""
            if result.error is not None:
                score = f"failed: {result.error}"
            else:
                score = _fmt(result.score) + ("" if result.final or not rung_headers else " (stopped)")
                if result.diverged_at is not None:
                    score += f" (diverged at {result.diverged_at:.3g})"
            rungs = tuple(
                _fmt(result.rung_scores[i]) if i < len(result.rung_scores) else "" for i in range(len(rung_headers))
            )
            figures = tuple(_fmt((result.fidelity or {}).get(key)) for _, key in neighbours)
            rows.append(
                (chosen, result.description, f"{result.embedding_bytes:,}", *rungs, score, *figures,
                 f"mean of {result.averaged}" if result.averaged else f"{result.best_epoch:.3g}",
                 f"{result.seconds:.1f}")
            )
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def print(self):
        print(str(self))


def _fmt(value):
    return "n/a" if value is None else f"{value:.4f}"
