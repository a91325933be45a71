"""Vocabulary pruning: keep the rows of the most frequent ids.

`prune_vocabulary` keeps `keep` rows of each selected embedding table (the
most frequent ids, or an explicit list) and sends every other id to the
out-of-vocabulary row, without changing what the model takes as input:

- when the model holds the `TextVectorization`/`StringLookup`/
  `IntegerLookup` layer that produces the table's ids, its vocabulary is
  pruned with the table, so the pruned model still takes raw text and stores
  nothing extra;
- otherwise the table is wrapped in a `keras_lowrank.PrunedEmbedding`, which
  maps ids to kept rows: with no stored table when the kept ids are the first
  ones (frequency-ordered vocabularies), with a stored remap table otherwise.

This module must not factorize or quantize tables (that is the surgery and the
layers), nor choose how many rows to keep (that is the budget planner).
"""

import numbers

import keras
import numpy as np

from keras_lowrank import _keras_private
from keras_lowrank import decomposition
from keras_lowrank.layers import PrunedEmbedding
from keras_lowrank.layers import table_kinds
from keras_lowrank.surgery import copy_model
from keras_lowrank.surgery import find_embeddings
from keras_lowrank.surgery import replace_layers
from keras_lowrank.surgery.factorize_embeddings import not_a_vocabulary_reason
from keras_lowrank.surgery.replace import dense_table_class
from keras_lowrank.surgery.replace import select_layers

PADDING_ID = 0

_LOOKUP_LAYERS = (
    keras.layers.TextVectorization,
    keras.layers.StringLookup,
    keras.layers.IntegerLookup,
)


def prune_vocabulary(model, keep, *, counts=None, layer_names=None, oov_id=1):
    """Keeps the `keep` most frequent rows of embedding tables; other ids go to OOV.

    The model's input pipeline keeps working unchanged. Id 0 (padding) and
    `oov_id` are always kept. Which rows are kept:

    - `keep` an integer and `counts` given: the `keep` ids with the largest
      counts (ties broken by the smaller id);
    - `keep` an integer and no `counts`: the first `keep` ids, which are the
      most frequent ones in vocabularies ordered by frequency (Keras'
      `TextVectorization` and `StringLookup` order theirs so);
    - `keep` a sequence of ids: exactly those (plus 0 and `oov_id`);
    - `keep` a boolean mask with one entry per id: the ids where it is
      `True` (plus 0 and `oov_id`), as numpy indexes with a mask.

    When the model contains the `TextVectorization`, `StringLookup` or
    `IntegerLookup` layer whose vocabulary numbers the table's rows (same
    size), its vocabulary is pruned consistently and the table simply gets
    fewer rows. Otherwise the table becomes a
    `keras_lowrank.PrunedEmbedding`: ids beyond the first `keep` map to OOV
    when the kept ids are the first ones (nothing stored), and a remap table
    of one small integer per id is stored otherwise (counted in
    `keras_lowrank.compression.table_bytes`).

    Works on `keras.layers.Embedding`, `keras.layers.ReversibleEmbedding`
    (tied or not) and their low-rank layers (float; quantize after
    pruning). The original model is not changed: the result is a copy of the
    same class. A pruned reversible table still answers `reverse=True` with
    logits over every id, a pruned id's being the OOV row's (see
    `PrunedEmbedding`): harmless for a classifier, which never calls it, but
    a language model then cannot tell pruned tokens apart when it generates.

    Args:
        model: A built `keras.Model`.
        keep: Which rows to keep in each selected table, one of:
            an integer number of rows (a Python or numpy integer, not a
            bool, at least the number of reserved ids 0 and `oov_id` and
            less than the vocabulary size); a 1-D sequence of integer ids in
            `[0, input_dim)` (floats are refused, as numpy refuses them as
            indices; duplicates and order do not matter); or a 1-D boolean
            mask of exactly `input_dim` entries.
        counts: Optional, with an integer `keep` only: a 1-D array of
            `input_dim` non-negative finite per-id counts (for example
            training token counts), or a dict `{table: counts}` whose keys
            are layer names or paths of the model's embedding tables; a
            selected table the dict does not name keeps its first `keep`
            ids.
        layer_names: `None` (every table), a layer name or a list of names.
        oov_id: Non-negative integer, the id whose row every pruned id
            shares (Keras' lookups use 1). Defaults to 1.

    Returns:
        The pruned model.

    Raises:
        ValueError: If an argument is not as described above (the error
            names the table it concerns), or a table cannot be pruned
            (quantized, or a low-rank table whose rank the kept rows cannot
            use).

    Example:

    ```python
    counts = np.bincount(x_train.ravel(), minlength=vocab_size)
    small = keras_lowrank.prune_vocabulary(model, 2_000, counts=counts)
    small.predict(x_test)  # the same ids as before
    ```
    """
    if not isinstance(model, keras.Model) or not model.built:
        raise ValueError(f"Expected `model` to be a built keras.Model, received: model={model!r}")
    if isinstance(oov_id, bool) or not isinstance(oov_id, numbers.Integral) or oov_id < 0:
        raise ValueError(f"Expected `oov_id` to be a non-negative integer, received: oov_id={oov_id!r}")
    selected = _selected_tables(model, layer_names)
    if isinstance(counts, dict):
        _check_counts_keys(model, counts)
    plans = {}
    for path, layer in selected:
        layer_counts = counts.get(path, counts.get(layer.name)) if isinstance(counts, dict) else counts
        try:
            kept = kept_ids(int(layer.input_dim), keep, counts=layer_counts, oov_id=oov_id)
        except ValueError as error:
            raise ValueError(f"Table '{path}': {error}") from None
        _check_prunable(path, layer, kept)
        plans[path] = kept

    work = copy_model(model)
    tables = dict(_selected_tables(work, list(plans)))
    lookups = vocabulary_layers(work)
    replacements = {}
    for path, kept in plans.items():
        layer = tables[path]
        subset = _subset_table(layer, kept)
        lookup = lookup_of(lookups, layer)
        if lookup is not None:
            vocabulary = lookup.get_vocabulary()
            lookup.set_vocabulary([vocabulary[i] for i in kept if i >= _special_tokens(lookup)])
            replacements[id(layer)] = subset
            continue
        prefix = bool(np.array_equal(kept, np.arange(len(kept))))
        wrapper = PrunedEmbedding(
            int(layer.input_dim),
            subset,
            oov_id=int(np.searchsorted(kept, oov_id)),
            remap=not prefix,
            name=layer.name,
        )
        wrapper.build()
        if not prefix:
            id_map = np.full(int(layer.input_dim), np.searchsorted(kept, oov_id), dtype=np.int64)
            id_map[kept] = np.arange(len(kept))
            wrapper.set_id_map(id_map)
        replacements[id(layer)] = wrapper
    return replace_layers(work, replacements)


def kept_ids(input_dim, keep, *, counts=None, oov_id=1):
    """The sorted ids kept by pruning a vocabulary of `input_dim` ids.

    See `prune_vocabulary` for the rules.

    Args:
        input_dim: Integer, the vocabulary size.
        keep: An integer number of rows, a 1-D sequence of integer ids or a
            1-D boolean mask of `input_dim` entries (see `prune_vocabulary`).
        counts: Optional 1-D array of `input_dim` per-id counts, with an
            integer `keep` only.
        oov_id: Integer, the out-of-vocabulary id. Defaults to 1.

    Returns:
        A sorted int64 array that always holds 0 and `oov_id`.

    Raises:
        ValueError: If `keep`, `counts` or `oov_id` is not as described.
    """
    reserved = sorted({PADDING_ID, int(oov_id)})
    if oov_id >= input_dim:
        raise ValueError(f"Expected `oov_id` < the vocabulary size {input_dim}, received: oov_id={oov_id}")
    if _is_count(keep):
        if not len(reserved) <= keep < input_dim:
            raise ValueError(
                f"Expected `keep` to be an integer in [{len(reserved)}, {input_dim}) (the vocabulary "
                f"has {input_dim} ids), received: keep={keep}"
            )
        if counts is None:
            kept = np.arange(keep)
            if oov_id >= keep:
                kept = np.concatenate([kept[: keep - 1], [oov_id]])
            return np.sort(kept).astype(np.int64)
        counts = _per_id_counts(counts, input_dim)
        order = np.argsort(-counts, kind="stable")
        order = order[~np.isin(order, reserved)]
        kept = np.concatenate([reserved, order[: keep - len(reserved)]])
        return np.sort(kept).astype(np.int64)
    if counts is not None:
        raise ValueError(
            "Expected `counts` to be None when `keep` lists the ids to keep (counts only choose the rows "
            f"of an integer `keep`), received: keep={_short_repr(keep)} and counts={_short_repr(counts)}"
        )
    kept = np.unique(_ids_to_keep(keep, input_dim))
    kept = np.union1d(kept, reserved)
    if kept.size >= input_dim:
        raise ValueError(f"`keep` keeps every one of the {input_dim} ids: nothing to prune")
    return kept.astype(np.int64)


def _is_count(keep):
    return isinstance(keep, numbers.Integral) and not isinstance(keep, (bool, np.bool_))


def _ids_to_keep(keep, input_dim):
    """The ids named by a `keep` sequence or mask, unsorted, as int64."""
    expected = (
        "Expected `keep` to be an integer number of rows, a 1-D sequence of integer ids in "
        f"[0, {input_dim}) or a boolean mask of {input_dim} entries"
    )
    values = None
    # A string is a sequence of characters, a dict one of its keys: neither
    # names ids.
    if not isinstance(keep, (str, bytes, dict, numbers.Number, np.bool_)):
        try:
            values = _to_numpy(keep)
            if values.dtype == object and values.ndim == 0:
                values = np.asarray(list(keep))
        except (TypeError, ValueError):
            values = None
    if values is None or values.ndim != 1:
        raise ValueError(f"{expected}, received: keep={_short_repr(keep)}")
    if values.dtype == bool:
        if values.shape != (input_dim,):
            raise ValueError(f"{expected}, received a boolean mask of {values.size} entries")
        return np.flatnonzero(values)
    if values.size == 0:
        return values.astype(np.int64)
    # numpy turns [True, 3] into [1, 3]: a bool among ids is a mistake.
    mixed = isinstance(keep, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in keep)
    if values.dtype.kind not in "iu" or mixed:
        raise ValueError(f"{expected}, received: keep={_short_repr(keep)}")
    if values.min() < 0 or values.max() >= input_dim:
        raise ValueError(
            f"Expected the ids in `keep` to be in [0, {input_dim}), received ids from {values.min()} to {values.max()}"
        )
    return values.astype(np.int64)


def _per_id_counts(counts, input_dim):
    values = _to_numpy(counts)
    if values.ndim != 1 or values.shape[0] != input_dim or values.dtype.kind not in "iuf":
        raise ValueError(
            f"Expected `counts` to be a 1-D array of {input_dim} non-negative finite numbers (one per id), "
            f"received an array of dtype {values.dtype} and shape {values.shape}"
        )
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0:
        raise ValueError(
            f"Expected `counts` to be a 1-D array of {input_dim} non-negative finite numbers (one per id), "
            f"received values from {values.min()} to {values.max()}"
        )
    return values


def _check_counts_keys(model, counts):
    """Every key of a `counts` dict names one of the model's tables."""
    tables = _unpruned_tables(model)
    unknown = [
        key for key in counts if not any(key == path or key == layer.name for path, layer in tables)
    ]
    if unknown:
        raise ValueError(
            f"Unknown table name(s) {unknown} in `counts`; the model's embedding tables are "
            f"{[path for path, _ in tables]}. Received: counts with keys {list(counts)}"
        )


def _to_numpy(value):
    return keras.ops.convert_to_numpy(value) if keras.ops.is_tensor(value) else np.asarray(value)


def _short_repr(value):
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _unpruned_tables(model):
    """Every table not already pruned whose layer is of its kind's own class."""
    found = []
    for path, layer in find_embeddings(model, include_factorized=True):
        kind = table_kinds.kind_of(layer)
        if isinstance(layer, PrunedEmbedding):
            continue
        # A user's Embedding subclass may override what the subset relies
        # on: only Keras' own tables (and renaming subclasses).
        if kind.name == "dense" and dense_table_class(layer) is None:
            continue
        found.append((path, layer))
    return found


def _selected_tables(model, layer_names):
    found = _unpruned_tables(model)
    if layer_names is None:
        found = [
            (path, layer) for path, layer in found
            if not_a_vocabulary_reason(path, layer) is None and table_kinds.kind_of(layer).prunable
        ]
    if not found:
        raise ValueError(
            "Expected `model` to contain a vocabulary table to prune (keras.layers.Embedding, "
            f"ReversibleEmbedding or their low-rank layers), found none in model '{model.name}'"
        )
    return select_layers(found, layer_names)


def _check_prunable(path, layer, kept):
    kind = table_kinds.kind_of(layer)
    if not kind.prunable:
        raise ValueError(
            f"Table '{path}' is a {kind.name} table, whose rows cannot be subset: prune the float model, "
            f"then build the {kind.name} table."
        )
    if getattr(layer, "quantization_mode", None):
        raise ValueError(
            f"Table '{path}' is quantized ({layer.quantization_mode}): prune the float model, then quantize."
        )
    if kind.name == "low-rank":
        cap = decomposition.max_useful_rank(len(kept), layer.output_dim)
        if layer.rank > cap:
            raise ValueError(
                f"Table '{path}' has rank {layer.rank}, more than {len(kept)} kept rows can use "
                f"(at most {cap}): keep more rows or factorize after pruning."
            )


def _subset_table(layer, kept):
    """A new layer of the same class holding only the `kept` rows.

    Rows are the first axis of every per-id variable (`embeddings`, `lookup`
    and their `reverse_` twins of an untied reversible table), except Keras'
    `reverse_embeddings`, stored transposed.
    """
    config = layer.get_config()
    config["input_dim"] = int(len(kept))
    new = type(layer).from_config(config)
    new.build()
    by_rows = {"embeddings", "lookup", "reverse_lookup"}
    values = []
    for variable in layer.weights:
        value = keras.ops.convert_to_numpy(variable)
        name = variable.path.rsplit("/", 1)[-1]
        if name in by_rows:
            value = value[kept]
        elif name == "reverse_embeddings":
            value = value[:, kept]
        values.append(value)
    new.set_weights(values)
    return new


def lookup_of(lookups, layer):
    """The lookup of `vocabulary_layers` pruned with `layer`'s rows, or None.

    A reversible table is never renumbered through its lookup: its reverse
    call must keep answering every original id, which the `PrunedEmbedding`
    route does.
    """
    if table_kinds.is_reversible(layer):
        return None
    return lookups.get(int(layer.input_dim))


def vocabulary_layers(model):
    """`{vocabulary size: lookup layer}` for lookups whose size is unique."""
    by_size = {}
    layers = _keras_private.flatten_layers(model)
    # A TextVectorization holds a StringLookup of the same vocabulary: the
    # outer layer is the one to prune.
    inner = {id(_keras_private.inner_lookup(layer)) for layer in layers if isinstance(layer, keras.layers.TextVectorization)}
    for layer in layers:
        if isinstance(layer, _LOOKUP_LAYERS) and id(layer) not in inner:
            by_size.setdefault(int(layer.vocabulary_size()), []).append(layer)
    return {size: layers[0] for size, layers in by_size.items() if len(layers) == 1}


def _special_tokens(lookup):
    """How many leading vocabulary entries are the mask and OOV tokens."""
    inner = _keras_private.inner_lookup(lookup)
    mask = 1 if getattr(inner, "mask_token", None) is not None else 0
    return mask + int(getattr(inner, "num_oov_indices", 1))
