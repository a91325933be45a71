"""The summary of one `factorize_embeddings` conversion.

`ConversionReport` holds one row per converted `Embedding` (shape, rank,
parameters before and after, spectral energy kept, reconstruction error) and
the model-level parameter counts, renders them as an aligned text table and
exposes them as plain Python data for programs (`rows`, `to_dict()`).

This module only formats numbers it is given: it must not import Keras or
TensorFlow, touch a model, or compute a decomposition.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class LayerConversion:
    """One converted embedding layer.

    Args:
        name: Path of the layer inside the model, `/`-separated layer names
            below the top-level model (`"embedding"`, `"encoder/embedding"`).
        input_dim: Vocabulary size `V` of the table.
        output_dim: Embedding width `d` of the table.
        rank: Rank `r` of the factorization.
        params_before: Parameters of the dense table, `V * d`.
        params_after: Parameters of the two factors, `r * (V + d)`.
        energy_kept: Share of the squared Frobenius norm of the table carried
            by its `r` leading singular values, `sum(s[:r]**2) / sum(s**2)`:
            the best any rank-`r` approximation can keep (Eckart-Young).
        relative_error: `||E - A @ B||_F / ||E||_F` of the factors actually
            installed. For a plain truncated SVD this is
            `sqrt(1 - energy_kept)`; a frequency-weighted fit trades some of
            it for accuracy on frequent rows.
    """

    name: str
    input_dim: int
    output_dim: int
    rank: int
    params_before: int
    params_after: int
    energy_kept: float
    relative_error: float

    @property
    def compression(self):
        """Share of the table's parameters removed, `1 - after / before`."""
        return _compression(self.params_before, self.params_after)

    def to_dict(self):
        """Returns the row as a plain dict (including `compression`)."""
        row = dataclasses.asdict(self)
        row["compression"] = self.compression
        return row


@dataclasses.dataclass(frozen=True)
class SkippedTable:
    """An embedding table found but not converted, and why.

    Args:
        name: Path of the layer inside the model.
        input_dim: Rows `V` of the table.
        output_dim: Width `d` of the table.
        reason: Why it was skipped (a segment/type or position table, or a
            request it cannot meet). Naming it in `layer_names` converts it.
    """

    name: str
    input_dim: int
    output_dim: int
    reason: str

    def to_dict(self):
        """Returns the row as a plain dict."""
        return dataclasses.asdict(self)


class ConversionReport:
    """What `factorize_embeddings` converted, printable and inspectable.

    `str(report)` (and so `print(report)` or `report.print()`) renders an
    aligned table with one row per converted layer, a total row, and the
    model-level parameter counts: embedding parameters versus the rest of the
    model, before and after. `report.rows` holds the `LayerConversion` rows
    and `report.to_dict()` everything as plain Python data (for JSON).

    Args:
        rows: Sequence of `LayerConversion`, one per converted layer.
        model_params_before: Parameters of the whole model before conversion
            (each shared variable counted once).
        model_params_after: Parameters of the whole converted model.
        in_place: Whether the model object was converted in place
            (subclassed models) or a rebuilt model was returned.
        skipped: Sequence of `SkippedTable`, the tables found and left
            dense.

    Example:

    ```python
    model, report = keras_lowrank.factorize_embeddings(
        model, compression=0.9, return_report=True)
    print(report)
    report.to_dict()["totals"]["compression"]
    ```
    """

    def __init__(
        self,
        rows,
        model_params_before,
        model_params_after,
        in_place=False,
        skipped=(),
    ):
        self.rows = tuple(rows)
        self.skipped = tuple(skipped)
        self.model_params_before = int(model_params_before)
        self.model_params_after = int(model_params_after)
        self.in_place = bool(in_place)

    @property
    def embedding_params_before(self):
        """Parameters of the converted tables before conversion."""
        return sum(row.params_before for row in self.rows)

    @property
    def embedding_params_after(self):
        """Parameters of their factors after conversion."""
        return sum(row.params_after for row in self.rows)

    @property
    def other_params(self):
        """Parameters of everything else in the model (unchanged)."""
        return self.model_params_before - self.embedding_params_before

    @property
    def compression(self):
        """Share of the converted embedding parameters removed."""
        return _compression(
            self.embedding_params_before, self.embedding_params_after
        )

    @property
    def model_compression(self):
        """Share of the whole model's parameters removed."""
        return _compression(self.model_params_before, self.model_params_after)

    def to_dict(self):
        """Returns the report as plain Python data.

        Returns:
            A dict with `"layers"` (one dict per row), `"totals"` (embedding
            parameters before/after and their compression) and `"model"`
            (whole-model parameters before/after, the unchanged rest, the
            model compression and whether the conversion was in place) and
            `"skipped"` (one dict per table left dense, with its reason).
        """
        return {
            "skipped": [row.to_dict() for row in self.skipped],
            "layers": [row.to_dict() for row in self.rows],
            "totals": {
                "params_before": self.embedding_params_before,
                "params_after": self.embedding_params_after,
                "compression": self.compression,
            },
            "model": {
                "params_before": self.model_params_before,
                "params_after": self.model_params_after,
                "other_params": self.other_params,
                "compression": self.model_compression,
                "in_place": self.in_place,
            },
        }

    def print(self):
        """Prints the table (same text as `str(report)`)."""
        print(str(self))

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self):
        return (
            f"<ConversionReport: {len(self.rows)} layer(s), "
            f"embedding params {self.embedding_params_before:,} -> "
            f"{self.embedding_params_after:,} "
            f"(compression {self.compression:.1%})>"
        )

    def __str__(self):
        header = (
            "layer",
            "input_dim",
            "output_dim",
            "rank",
            "params before",
            "params after",
            "compression",
            "energy kept",
            "rel. error",
        )
        body = [
            (
                row.name,
                f"{row.input_dim:,}",
                f"{row.output_dim:,}",
                f"{row.rank:,}",
                f"{row.params_before:,}",
                f"{row.params_after:,}",
                f"{row.compression:.1%}",
                f"{row.energy_kept:.1%}",
                f"{row.relative_error:.4f}",
            )
            for row in self.rows
        ]
        total = (
            "total",
            "",
            "",
            "",
            f"{self.embedding_params_before:,}",
            f"{self.embedding_params_after:,}",
            f"{self.compression:.1%}",
            "",
            "",
        )
        table = [header] + body + [total]
        widths = [max(len(line[i]) for line in table) for i in range(9)]

        def render(line):
            # Names left-aligned, numbers right-aligned, as in model.summary.
            cells = [line[0].ljust(widths[0])]
            cells += [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])]
            return "  ".join(cells).rstrip()

        rule = "-" * len(render(header))
        lines = [render(header), rule]
        lines += [render(line) for line in body]
        lines += [rule, render(total), ""]
        before, after = self.model_params_before, self.model_params_after
        lines.append(
            f"model parameters: {before:,} -> {after:,} "
            f"(compression {self.model_compression:.1%}; "
            f"embeddings {self.embedding_params_before:,} -> "
            f"{self.embedding_params_after:,}, "
            f"rest of the model {self.other_params:,} unchanged)"
        )
        lines.append(
            "converted in place" if self.in_place else "rebuilt model returned"
        )
        for row in self.skipped:
            lines.append(
                f"skipped {row.name} ({row.input_dim:,}x{row.output_dim:,}): "
                f"{row.reason}"
            )
        return "\n".join(lines)


def _compression(before, after):
    return 1.0 - after / before if before else 0.0
