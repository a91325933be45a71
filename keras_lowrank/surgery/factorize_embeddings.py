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

import keras
import numpy as np
from keras.src.models.functional import Functional

from keras_lowrank import decomposition
from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.surgery.report import ConversionReport
from keras_lowrank.surgery.report import LayerConversion

_SPLITS = ("balanced", "right")

# Attributes of a layer that hold Keras or TensorFlow bookkeeping, never a
# user's sublayer: scanning them would find every layer a second time.
_BOOKKEEPING_ATTRIBUTES = frozenset(
    {"_layers", "_tracker", "_inbound_nodes", "_outbound_nodes", "_functional"}
)

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
):
    """Replaces the `Embedding` layers of a trained model by low-rank ones.

    Every selected `keras.layers.Embedding` (all of them by default) is
    replaced by a `keras_lowrank.layers.LowRankEmbedding` built with
    `LowRankEmbedding.from_embedding`, i.e. initialized from the truncated
    SVD of the trained table, so that `A @ B` is its best rank-`r`
    approximation (Eckart-Young). The replacement keeps the layer name,
    `mask_zero` and dtype policy, so masking downstream is unchanged. Every
    other layer object, with its trained weights, is kept as it is (the very
    same Python objects). An `Embedding` called at several places (a shared
    layer) is replaced by one `LowRankEmbedding` shared the same way.

    Only layers whose class is exactly `keras.layers.Embedding` are
    considered: subclasses (for example layers with a tied output
    projection) may use their table outside `call` and are left alone.

    How the new model comes about depends on the kind of model:

    - Sequential and Functional models (also nested ones, a model used as a
      layer of another) cannot change their graph in place: a rebuilt model
      is returned (`keras.models.clone_model` with the original layer objects
      reused). Its name, the names of its layers and inputs, and its
      inputs/outputs structure are those of the original; the original model
      keeps working with its own `Embedding` layers. A nested Sequential or
      Functional model is rebuilt only when it holds a converted layer;
      otherwise the same object is reused.
    - Subclassed models and custom layers are converted in place: the
      attribute that holds the `Embedding` (directly, or in a list, tuple or
      dict attribute) is set to the replacement, and the same object is
      returned. This also applies to a subclassed layer sitting inside a
      Functional model, which is therefore shared, converted, by the original
      and the rebuilt model.

    If the model was compiled, the converted model is compiled again with the
    same compile configuration (fresh optimizer state, since the trainable
    variables changed); compiled functions of a model converted in place are
    reset. Fine-tuning afterwards is the usual `compile` and `fit`.

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
        layer_names: `None` (every `Embedding`), a layer name or a list of
            them. A name matches a layer's own name or its path inside nested
            models (`"encoder/embedding"`).
        split: Where the singular values go: `"balanced"` (`sqrt(S)` on both
            factors) or `"right"` (all on the projection).
        row_weights: Optional non-negative weight per vocabulary row (for
            example token frequencies) for a frequency-weighted fit: an array
            when a single `Embedding` is converted, or a dict mapping layer
            names (or paths) to arrays; layers missing from the dict get the
            plain SVD.
        return_report: If `True`, also return a `ConversionReport`.
        verbose: If `True`, print the report.

    Returns:
        The converted model (the same object for subclassed models, a rebuilt
        one for Sequential and Functional models), or
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
    if not isinstance(split, str) or split not in _SPLITS:
        raise ValueError(
            f"Expected `split` to be one of {_SPLITS}, received: split={split!r}"
        )
    requested = _normalize_layer_names(layer_names)

    found = find_embeddings(model)
    if not found:
        raise ValueError(
            "Expected `model` to contain at least one keras.layers.Embedding "
            f"layer, found none; received: model={_describe(model)}"
        )
    selected = _select(found, requested, layer_names)
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
        replacements[id(layer)] = new
        rows.append(_report_row(path, layer, new))

    params_before = _count_params(model)
    in_place = not _is_graph_model(model)
    compile_config = None
    if in_place and getattr(model, "compiled", False):
        # Read now: after the swap the old configuration is still right, but
        # a model whose config cannot be read must fail before any change.
        compile_config = model.get_compile_config()

    # Phase 2: rebuild the Sequential/Functional containers that hold a
    # replaced layer and plan the attribute swaps of subclassed ones. The
    # rebuilt models are new objects; the original is still untouched.
    converter = _Converter(replacements)
    converted = converter.convert(model)

    # Phase 3: the in-place part, undone if anything in it fails.
    converter.commit(compile_config=compile_config)

    report = ConversionReport(
        rows,
        model_params_before=params_before,
        model_params_after=_count_params(converted),
        in_place=in_place,
    )
    if verbose:
        report.print()
    if return_report:
        return converted, report
    return converted


class _Converter:
    """Maps each layer of a model to its converted counterpart.

    `convert` is memoized on object identity, so a layer reached several
    times (shared layers, shared nested models) is converted once and its
    converted form is shared the same way.
    """

    def __init__(self, replacements):
        self.replacements = replacements
        self.converted = {}
        self.holds_target = {}
        self.swaps = []
        self.in_place_models = []

    def convert(self, layer):
        key = id(layer)
        if key in self.converted:
            return self.converted[key]
        if key in self.replacements:
            result = self.replacements[key]
        elif not self._holds_target(layer):
            result = layer
        elif _is_graph_model(layer):
            result = self._rebuild(layer)
        else:
            # Registered first so that a layer reachable from itself
            # (a cycle through attributes) is not planned twice.
            self.converted[key] = layer
            self._plan_swaps(layer)
            result = layer
        self.converted[key] = result
        return result

    def commit(self, compile_config=None):
        done = []
        try:
            for swap in self.swaps:
                swap.apply()
                done.append(swap)
            for model in self.in_place_models:
                _reset_compiled_functions(model)
            if compile_config:
                self.in_place_models[0].compile_from_config(compile_config)
        except Exception:
            for swap in reversed(done):
                swap.undo()
            raise

    def _holds_target(self, layer, _visiting=None):
        key = id(layer)
        if key in self.holds_target:
            return self.holds_target[key]
        if key in self.replacements:
            return True
        visiting = set() if _visiting is None else _visiting
        if key in visiting:
            return False
        visiting.add(key)
        result = any(
            self._holds_target(child, visiting) for child in _children(layer)
        )
        self.holds_target[key] = result
        return result

    def _rebuild(self, model):
        # `clone_model` calls `convert` once per layer of this graph level
        # (not for input layers); nested Sequential/Functional models come
        # back through `convert` and are rebuilt only if they hold a target,
        # so every untouched layer, nested models included, is reused as is.
        rebuilt = keras.models.clone_model(model, clone_function=self.convert)
        if not rebuilt.built and model.built:
            # A Sequential model without an input layer is only built when
            # first called; build it now as the original was.
            rebuilt.build(model.input_shape)
        return rebuilt

    def _plan_swaps(self, owner):
        if isinstance(owner, keras.Model):
            self.in_place_models.append(owner)
        reached = set()
        for attribute, value, key, child in _attribute_children(owner):
            reached.add(id(child))
            new = self.convert(child)
            if new is not child:
                self.swaps.append(_Swap(owner, attribute, key, child, new))
        for child in getattr(owner, "_layers", ()):
            if id(child) not in reached and self._holds_target(child):
                raise ValueError(
                    f"Cannot replace the Embedding inside layer "
                    f"'{child.name}' of '{owner.name}': it is tracked by the "
                    "layer but not held by one of its attributes (directly, "
                    "or in a list, tuple or dict attribute). Received: "
                    f"model layer '{owner.name}' "
                    f"({type(owner).__name__})"
                )


class _Swap:
    """One attribute (or container item) of a layer set to a new layer."""

    def __init__(self, owner, attribute, key, old, new):
        self.owner = owner
        self.attribute = attribute
        self.key = key
        self.old = old
        self.new = new

    def apply(self):
        self._set(self.old, self.new)

    def undo(self):
        self._set(self.new, self.old)

    def _set(self, old, new):
        # Replace in the owner's list of tracked sublayers at the same
        # position: the order of `model.weights` (and of saved variables)
        # stays that of the original.
        tracker = getattr(self.owner, "_tracker", None)
        if tracker is not None and tracker.is_in_store("layers", old):
            if tracker.is_in_store("layers", new):
                tracker.untrack(old)
            else:
                tracker.replace_tracked_value("layers", old, new)
        if self.key is None:
            setattr(self.owner, self.attribute, new)
            return
        container = getattr(self.owner, self.attribute)
        if isinstance(container, tuple):
            items = [new if i == self.key else v for i, v in enumerate(container)]
            if hasattr(container, "_fields"):
                setattr(self.owner, self.attribute, type(container)(*items))
            else:
                setattr(self.owner, self.attribute, type(container)(items))
        else:
            container[self.key] = new


def _build_replacement(path, layer, **kwargs):
    try:
        new = LowRankEmbedding.from_embedding(layer, **kwargs)
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
        params_before=int(layer.input_dim) * int(layer.output_dim),
        params_after=int(new.count_params()),
        energy_kept=energy,
        relative_error=relative_error,
    )


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


def _normalize_layer_names(layer_names):
    if layer_names is None:
        return None
    names = [layer_names] if isinstance(layer_names, str) else layer_names
    try:
        names = list(names)
    except TypeError:
        names = None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            "Expected `layer_names` to be None, a layer name or a non-empty "
            "list of layer names, received: "
            f"layer_names={layer_names!r}"
        )
    return names


def _select(found, requested, layer_names):
    if requested is None:
        return found
    available = [path for path, _ in found]
    unknown = [
        name
        for name in requested
        if not any(_matches(name, path, layer) for path, layer in found)
    ]
    if unknown:
        raise ValueError(
            f"Unknown Embedding layer name(s) {unknown} in `layer_names`; "
            f"the model's Embedding layers are {available}. Received: "
            f"layer_names={layer_names!r}"
        )
    return [
        (path, layer)
        for path, layer in found
        if any(_matches(name, path, layer) for name in requested)
    ]


def _matches(name, path, layer):
    return name == path or name == layer.name


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


def find_embeddings(model, *, include_factorized=False):
    """Returns `[(path, layer)]` for every distinct embedding layer of `model`.

    Searches nested models and subclassed models' attributes; a layer shared
    by several call sites is listed once, in model order. The path is the
    `/`-separated layer names below `model`, as in `ConversionReport`.

    Args:
        model: A Keras model (any kind).
        include_factorized: By default only layers of exactly the class
            `keras.layers.Embedding` (what `factorize_embeddings` converts:
            subclasses may use their table outside `call`). If `True`, any
            `keras.layers.Embedding` (subclasses included) and every
            `LowRankEmbedding` are listed too (what inspection needs).

    Returns:
        A list of `(path, layer)` pairs.
    """
    if include_factorized:
        def wanted(layer):
            return isinstance(layer, (keras.layers.Embedding, LowRankEmbedding))
    else:
        wanted = _is_target_class
    found = []
    seen = {id(model)}

    def walk(layer, prefix):
        for child in _children(layer):
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = prefix + child.name
            if wanted(child):
                found.append((path, child))
            else:
                walk(child, path + "/")

    walk(model, "")
    return found


def _children(layer):
    """The sublayers of `layer`, graph models' layers or attribute-held ones."""
    if _is_graph_model(layer):
        return list(layer.layers)
    children = [child for *_, child in _attribute_children(layer)]
    ids = {id(child) for child in children}
    # Sublayers tracked but held elsewhere (e.g. in a nested container) are
    # still searched, so that such an Embedding is reported, not ignored.
    children += [c for c in getattr(layer, "_layers", ()) if id(c) not in ids]
    return children


def _attribute_children(owner):
    """Yields (attribute, value, key, layer) for layers held by attributes."""
    for attribute, value in list(vars(owner).items()):
        if attribute in _BOOKKEEPING_ATTRIBUTES or attribute.startswith(
            "_self_"
        ):
            continue
        if isinstance(value, keras.layers.Layer):
            yield attribute, value, None, value
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if isinstance(item, keras.layers.Layer):
                    yield attribute, value, index, item
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, keras.layers.Layer):
                    yield attribute, value, key, item


def _is_graph_model(layer):
    return isinstance(layer, (keras.Sequential, Functional))


def _is_target_class(layer):
    # Exactly Embedding: subclasses may use their table outside `call`.
    return type(layer) is keras.layers.Embedding


def _reset_compiled_functions(model):
    # Traced train/test/predict functions captured the old layer's
    # variables; drop them so that the next call traces the new graph.
    for name in ("train_function", "test_function", "predict_function"):
        if hasattr(model, name):
            setattr(model, name, None)


def _count_params(model):
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def _describe(model):
    return f"<{type(model).__name__} name='{model.name}'>"


def _short(value):
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<array of shape {tuple(shape)}>"
    return repr(value)[:80]
