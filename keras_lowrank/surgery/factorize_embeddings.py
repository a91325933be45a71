"""Model surgery: replace trained `Embedding` layers by `LowRankEmbedding`.

`factorize_embeddings` finds the `keras.layers.Embedding` layers of a built
model (also inside nested models and subclassed layers), builds one
`LowRankEmbedding` per selected table from its truncated SVD, and installs
them, keeping every other layer object and its trained weights.

The conversion is a transaction: every argument is validated and every
replacement is built and checked before anything is changed, so a failed call
leaves the model as it was. This module must not compute decompositions itself
(that is `keras_lowrank.decomposition`, reached through
`LowRankEmbedding.from_embedding`) nor define layers.
"""

import warnings

import keras
import numpy as np

from keras_lowrank import decomposition
from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.layers import LowRankReversibleEmbedding
from keras_lowrank.surgery.replace import copy_model
from keras_lowrank.surgery.replace import dense_table_class
from keras_lowrank.surgery.replace import find_embeddings
from keras_lowrank.surgery.replace import _matches
from keras_lowrank.surgery.replace import is_graph_model
from keras_lowrank.surgery.replace import normalize_layer_names
from keras_lowrank.surgery.replace import select_layers
from keras_lowrank.surgery.replace import is_rebuildable
from keras_lowrank.surgery.replace import replace_layers
from keras_lowrank.surgery.report import ConversionReport
from keras_lowrank.surgery.report import LayerConversion
from keras_lowrank.surgery.report import SkippedTable

_SPLITS = ("balanced", "right")

# The factorized twin of each convertible dense table class.
_FACTORIZED = {
    keras.layers.Embedding: LowRankEmbedding,
    keras.layers.ReversibleEmbedding: LowRankReversibleEmbedding,
}

# Words in a table's name that mark a segment/type or position table: a few
# rows indexed by position or sentence, not a vocabulary.
_TYPE_WORDS = ("segment", "token_type", "type_embedding", "type_ids")
_POSITION_WORDS = ("position",)

# Rows of a table compared per block when measuring the reconstruction error,
# so that the dense product `A @ B` of a large vocabulary never exists at once.
_ERROR_BLOCK_ROWS = 8192


def factorize_embeddings(
    model,
    *,
    rank=None,
    compression=None,
    energy=None,
    layer_names=None,
    split="balanced",
    row_weights=None,
    return_report=False,
    verbose=False,
    share_layers=False,
):
    """Replaces the `Embedding` layers of a trained model by low-rank ones.

    Every selected `keras.layers.Embedding` (all of them by default) is
    replaced by a `keras_lowrank.layers.LowRankEmbedding` built with
    `LowRankEmbedding.from_embedding`, i.e. initialized from the truncated
    SVD of the trained table, so that `A @ B` is its best rank-`r`
    approximation (Eckart-Young). The replacement keeps the layer name,
    `mask_zero` and dtype policy, so masking downstream is unchanged. An
    `Embedding` called at several places (a shared layer) is replaced by one
    `LowRankEmbedding` shared the same way. An `Embedding` inside a
    `keras_lowrank.PrunedEmbedding` (after `prune_vocabulary`) is found and
    factorized in place of the kept rows.

    `keras.layers.ReversibleEmbedding` tables (the token tables of
    KerasHub models, tied or not to the output logits) become
    `keras_lowrank.layers.LowRankReversibleEmbedding`, so LM heads calling
    `token_embedding(x, reverse=True)` keep working. Other subclasses of
    `Embedding` that override anything may use their table outside `call`
    and are left alone (see `keras_lowrank.surgery.replace.dense_table_class`).

    Tiny tables are never compressed by surprise: without `layer_names`,
    segment/type tables and position tables (recognised by their name), and
    any table where the request cannot be met (`compression` beyond what
    rank 1 reaches, a `rank` or an `energy` whose rank saves nothing) are
    skipped, each with its reason in the report (`report.skipped`). A table
    named in `layer_names` is converted whatever it is. A call that would
    convert nothing is an error listing every table found and why it was
    skipped.

    KerasHub `Task` and `Backbone` models keep their class: a
    `BertTextClassifier` stays one, with its preprocessor, and
    `backbone.token_embedding` is the new layer. Such models are converted
    inside (their graph and attributes), and their `.keras` files reload the
    factorized layers (`import keras_lowrank` before loading).

    The original model is never changed: by default the conversion happens
    in a copy of the same class (`keras.models.clone_model` for Sequential
    and Functional models, nested ones included; a `.keras` round trip in
    memory for subclassed models, or a new instance of the class, such as a
    model with an argument-free `__init__` and no `get_config()`, built like
    the original; see `keras_lowrank.surgery.copy_model`) whose other layers
    hold copies of the trained weights. Fine-tuning the result therefore
    leaves the original intact, as a teacher for distillation or a baseline. With
    `share_layers=True` the previous, cheaper behaviour is kept: Sequential
    and Functional models are rebuilt around the *same* layer objects (the
    original keeps its own `Embedding`, but fine-tuning the result also
    trains the original's other layers), and subclassed models and custom
    layers (also `TimeDistributed` and other wrappers) are converted in
    place.

    The Embedding's `embeddings_regularizer` and `embeddings_constraint`
    have no equivalent on the factors (see
    `LowRankEmbedding.from_embedding`); a `UserWarning` names any that is
    dropped.

    If the model was compiled, the converted model is compiled with the
    same loss and metric objects (lambdas and unregistered functions
    included) and a fresh optimizer of the same configuration (its state
    cannot carry over: the trainable variables changed). Fine-tuning
    afterwards is the usual `fit`.

    Nothing is changed until every replacement has been built and checked:
    on any error the model is left as it was.

    Args:
        model: A built `keras.Model` holding at least one `Embedding`.
        rank: Rank of every factorization. Exactly one of `rank`,
            `compression` and `energy` must be given (see
            `keras_lowrank.decomposition.resolve_rank`); a rank that saves no
            parameters is an error.
        compression: Share of each table's parameters to remove, in (0, 1).
        energy: Share of each table's squared Frobenius norm (spectral
            energy) to keep, in (0, 1]; the rank is chosen per table.
        layer_names: `None` (every table except the skipped ones, see
            above), a layer name or a list of them. A name matches a layer's
            own name or its path inside nested models
            (`"encoder/embedding"`, `"backbone/token_embedding"`).
        split: Where the singular values go: `"balanced"` (`sqrt(S)` on both
            factors) or `"right"` (all on the projection).
        row_weights: Optional non-negative weight per vocabulary row (for
            example token frequencies) for a frequency-weighted fit: an array
            when a single `Embedding` is converted, or a dict mapping layer
            names (or paths) to arrays; layers missing from the dict get the
            plain SVD.
        return_report: If `True`, also return a `ConversionReport`.
        verbose: If `True`, print the report.
        share_layers: If `True`, reuse the original's layer objects (and
            convert subclassed models in place) instead of copying, see
            above. Defaults to `False`.

    Returns:
        The converted model, of the class of `model`, or
        `(model, report)` if `return_report=True`.

    Example:

    ```python
    model = keras_lowrank.models.dan_classifier(vocab_size, num_classes)
    model.fit(...)
    small, report = keras_lowrank.factorize_embeddings(
        model, compression=0.9, return_report=True)
    print(report)
    small.compile(optimizer="adam", loss=...)
    small.fit(...)
    ```

    References:
        - [Acharya et al., 2019. Online Embedding Compression for Text
          Classification using Low Rank Matrix Factorization](
          https://arxiv.org/abs/1811.00641)
    """
    _check_model(model)
    _check_bool(return_report, "return_report")
    _check_bool(verbose, "verbose")
    _check_bool(share_layers, "share_layers")
    if not isinstance(split, str) or split not in _SPLITS:
        raise ValueError(
            f"Expected `split` to be one of {_SPLITS}, received: split={split!r}"
        )
    requested = normalize_layer_names(layer_names)

    found = find_embeddings(model)
    if not found:
        others = [
            f"'{path}' ({type(layer).__name__})"
            for path, layer in find_embeddings(model, include_factorized=True)
        ]
        raise ValueError(
            "Expected `model` to contain at least one keras.layers.Embedding "
            "or keras.layers.ReversibleEmbedding layer, found none"
            + (
                f" (not convertible: {', '.join(others)}: already factorized, "
                "or an Embedding subclass that overrides its methods)"
                if others
                else ""
            )
            + f"; received: model={_describe(model)}"
        )
    selected = select_layers(found, layer_names)
    skipped = []
    if requested is None:
        kept = []
        for path, layer in selected:
            reason = _skip_reason(path, layer, rank, compression, energy)
            if reason is None:
                kept.append((path, layer))
            else:
                skipped.append(
                    SkippedTable(path, int(layer.input_dim), int(layer.output_dim), reason)
                )
        if not kept:
            listing = "; ".join(
                f"'{row.name}' ({row.input_dim}x{row.output_dim}): {row.reason}"
                for row in skipped
            )
            raise ValueError(
                "Nothing to convert: every embedding table of `model` was "
                f"skipped. Found {len(skipped)} table(s): {listing}. Name a "
                "table in `layer_names` to convert it anyway, or ask for a "
                "reachable `rank`/`compression`/`energy`. Received: "
                f"model={_describe(model)}"
            )
        selected = kept
    weights = _resolve_row_weights(row_weights, selected)
    for path, layer in selected:
        _check_embedding(model, path, layer)

    # Phase 1: build and check every replacement; nothing is changed yet.
    replacements = {}
    rows = []
    for path, layer in selected:
        new = _build_replacement(
            path,
            layer,
            rank=rank,
            compression=compression,
            energy=energy,
            split=split,
            row_weights=weights.get(id(layer)),
        )
        replacements[path] = new
        rows.append(_report_row(path, layer, new))

    params_before = _count_params(model)
    in_place = share_layers and not (is_graph_model(model) and is_rebuildable(model))
    # Phase 2: install them, in a copy that shares nothing with `model`
    # unless sharing was asked for. The copy has the same layer paths, so
    # the replacements are matched to its layers by path.
    target = model if share_layers else copy_model(model)
    by_path = dict(find_embeddings(target))
    converted = replace_layers(
        target, {id(by_path[path]): new for path, new in replacements.items()}
    )

    report = ConversionReport(
        rows,
        model_params_before=params_before,
        model_params_after=_count_params(converted),
        in_place=in_place,
        skipped=skipped,
    )
    if verbose:
        report.print()
    if return_report:
        return converted, report
    return converted


def _build_replacement(path, layer, **kwargs):
    for attribute in ("embeddings_regularizer", "embeddings_constraint"):
        if getattr(layer, attribute, None) is not None:
            warnings.warn(
                f"Embedding '{path}' has an `{attribute}` "
                f"({getattr(layer, attribute)!r}) that the factors do not get: a "
                "penalty or constraint on the table is not the same on its "
                "factors. Set `lookup_*`/`projection_*` on the LowRankEmbedding "
                "to choose them.",
                UserWarning,
                stacklevel=3,
            )
    factorized = _FACTORIZED[dense_table_class(layer)]
    try:
        new = factorized.from_embedding(layer, **kwargs)
    except ValueError as error:
        raise ValueError(
            f"Cannot factorize Embedding '{path}': {error}"
        ) from error
    lookup = keras.ops.convert_to_numpy(new.lookup)
    projection = keras.ops.convert_to_numpy(new.projection)
    problems = []
    if (new.input_dim, new.output_dim) != (layer.input_dim, layer.output_dim):
        problems.append(
            f"shape ({new.input_dim}, {new.output_dim}) differs from "
            f"({layer.input_dim}, {layer.output_dim})"
        )
    if new.name != layer.name:
        problems.append(f"name '{new.name}' differs from '{layer.name}'")
    if bool(new.mask_zero) != bool(layer.mask_zero):
        problems.append("mask_zero differs")
    if not (np.isfinite(lookup).all() and np.isfinite(projection).all()):
        problems.append("its factors hold non-finite values")
    if problems:
        raise ValueError(
            f"The low-rank replacement of Embedding '{path}' is invalid: "
            + "; ".join(problems)
        )
    return new


def _report_row(path, layer, new):
    table = keras.ops.convert_to_numpy(layer.embeddings)
    lookup = keras.ops.convert_to_numpy(new.lookup).astype(np.float64)
    projection = keras.ops.convert_to_numpy(new.projection).astype(np.float64)
    singular_values = None
    info = getattr(new, "factorization", None)
    if isinstance(info, dict):
        singular_values = info.get("singular_values")
    if singular_values is None:
        singular_values = decomposition.singular_values(table)
    energy = float(decomposition.energy_kept(singular_values, new.rank))

    residual = 0.0
    for start in range(0, table.shape[0], _ERROR_BLOCK_ROWS):
        block = table[start : start + _ERROR_BLOCK_ROWS].astype(np.float64)
        approx = lookup[start : start + _ERROR_BLOCK_ROWS] @ projection
        residual += float(np.sum((block - approx) ** 2))
    norm = float(np.sum(table.astype(np.float64) ** 2))
    relative_error = float(np.sqrt(residual / norm)) if norm > 0 else 0.0

    return LayerConversion(
        name=path,
        input_dim=int(layer.input_dim),
        output_dim=int(layer.output_dim),
        rank=int(new.rank),
        params_before=int(layer.count_params()),
        params_after=int(new.count_params()),
        energy_kept=energy,
        relative_error=relative_error,
    )


def not_a_vocabulary_reason(path, layer):
    """Why a table is no vocabulary worth compressing by default, or None.

    The one rule for "which tables does a call convert when none is named",
    shared by `factorize_embeddings` and `compress()`: segment/type and
    position tables (recognised by their name) and tables too small for any
    rank to save parameters.

    Args:
        path: the table's path in the model (its last part is the name).
        layer: the `keras.layers.Embedding`.

    Returns:
        A reason to print, or `None` for a vocabulary table.
    """
    name = path.rsplit("/", 1)[-1].lower()
    rows, width = int(layer.input_dim), int(layer.output_dim)
    if any(word in name for word in _TYPE_WORDS):
        return f"a segment/type table ({rows} ids), not a vocabulary"
    if any(word in name for word in _POSITION_WORDS):
        return f"a position table ({rows} positions), not a vocabulary"
    if decomposition.max_useful_rank(rows, width) < 1:
        return f"no rank saves parameters on a {rows}x{width} table"
    return None


def _skip_reason(path, layer, rank, compression, energy):
    """Why a table is not converted unless named, or None to convert it."""
    reason = not_a_vocabulary_reason(path, layer)
    if reason is not None:
        return reason
    rows, width = int(layer.input_dim), int(layer.output_dim)
    useful = decomposition.max_useful_rank(rows, width)
    if isinstance(rank, (int, np.integer)) and not isinstance(rank, bool):
        if rank > useful:
            return (
                f"rank {rank} saves nothing on a {rows}x{width} table "
                f"(largest useful rank {useful})"
            )
    elif isinstance(compression, (float, int)) and 0 < compression < 1:
        if (1 - compression) * rows * width / (rows + width) < 1:
            best = 1 - (rows + width) / (rows * width)
            return (
                f"compression {compression:.1%} cannot be reached: rank 1 "
                f"removes {best:.1%} of its parameters"
            )
    elif energy is not None:
        table = keras.ops.convert_to_numpy(keras.ops.cast(layer.embeddings, "float32"))
        try:
            decomposition.resolve_rank(
                rows,
                width,
                energy=energy,
                singular_values=decomposition.singular_values(table),
            )
        except ValueError as error:
            return f"energy {energy}: {error}"
    return None


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(
            "Expected `model` to be a keras.Model, received: "
            f"model={model!r} of type {type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            "Expected `model` to be built (call it on data, call "
            "`model.build(input_shape)` or give it an `Input`) so that its "
            f"Embedding tables exist; received: model={_describe(model)} "
            "which is not built"
        )


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"Expected `{name}` to be a boolean, received: {name}={value!r}"
        )


def _check_embedding(model, path, layer):
    if not layer.built:
        raise ValueError(
            f"Expected Embedding '{path}' of `model` to be built, received: "
            f"model={_describe(model)} whose layer '{path}' is not built"
        )
    mode = getattr(layer, "quantization_mode", None)
    if mode is not None:
        raise ValueError(
            f"Embedding '{path}' of `model` is quantized "
            f"(quantization_mode={mode!r}); factorize the float model, then "
            f"quantize the result. Received: model={_describe(model)}"
        )
    table = keras.ops.convert_to_numpy(layer.embeddings)
    finite = np.isfinite(table)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(
            f"Expected the table of Embedding '{path}' of `model` to hold "
            f"only finite values, found {int((~finite).sum())} non-finite "
            f"value(s) in {bad_rows.size} row(s) (first: row "
            f"{int(bad_rows[0])}); received: model={_describe(model)}"
        )


def _resolve_row_weights(row_weights, selected):
    """Returns {id(layer): weights} for the selected layers."""
    if row_weights is None:
        return {}
    if isinstance(row_weights, dict):
        names = [path for path, _ in selected]
        unknown = [
            key
            for key in row_weights
            if not any(_matches(key, path, layer) for path, layer in selected)
        ]
        if unknown:
            raise ValueError(
                f"Unknown layer name(s) {unknown} in `row_weights`; its keys "
                f"must be among the converted Embedding layers {names}. "
                f"Received: row_weights with keys {list(row_weights)}"
            )
        weights = {}
        for key, value in row_weights.items():
            for path, layer in selected:
                if _matches(key, path, layer):
                    weights[id(layer)] = value
        return weights
    if len(selected) != 1:
        names = [path for path, _ in selected]
        raise ValueError(
            "Expected `row_weights` to be a dict {layer_name: weights} when "
            f"{len(selected)} Embedding layers are converted ({names}); "
            f"received an array: row_weights={_short(row_weights)}"
        )
    return {id(selected[0][1]): row_weights}


def _count_params(model):
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def _describe(model):
    return f"<{type(model).__name__} name='{model.name}'>"


def _short(value):
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<array of shape {tuple(shape)}>"
    return repr(value)[:80]
