"""Finding embedding tables in any Keras model and swapping layers atomically.

`find_embeddings` walks Sequential, Functional, nested and subclassed models
(attribute-held sublayers included) and lists their embedding layers.
`replace_layers` installs replacement layers: Sequential and Functional
containers that hold a replaced layer are rebuilt with
`keras.models.clone_model`, subclassed ones have the attribute holding the
layer swapped, and subclasses of Functional models that `clone_model` cannot
rebuild with their class (KerasHub `Backbone` and `Task` models) have the
layer swapped in their graph and attributes; the swaps are undone if any
fails. Such a model converted in place is given a serializable subclass of
its own class that records the swapped layers in its config, so a `.keras`
round trip rebuilds them (`keras_lowrank>ConvertedModel`). `copy_model` makes
a model that shares no layer (and so no weight) with its source, of the same
class. `dense_table_class` is the one place that says which layers hold a
convertible dense table.

The transforms (`factorize_embeddings`, `prune_vocabulary`) build and check
their replacement layers first and then call `replace_layers` on a copy, so
the caller's model is never changed. This module must not build replacement
layers or decide which tables to convert.
"""

import importlib
import inspect
import os
import tempfile

import keras
import numpy as np

from keras_lowrank import _keras_private
from keras_lowrank.layers import PrunedEmbedding
from keras_lowrank.layers import table_kinds

# Attributes of a layer that hold Keras or TensorFlow bookkeeping, never a
# user's sublayer: scanning them would find every layer a second time.
_BOOKKEEPING_ATTRIBUTES = frozenset(
    {
        "_layers",
        "_tracker",
        "_inbound_nodes",
        "_outbound_nodes",
        "_functional",
        # A Functional graph's operations (edited by `_GraphSwap`).
        "_operations",
        "_operations_by_depth",
        "nnx_operations",
        "_nnx_op_mapping",
    }
)


def replace_layers(model, replacements):
    """Returns `model` with the layers in `replacements` swapped in.

    Args:
        model: a built `keras.Model`.
        replacements: `{id(old_layer): new_layer}`.

    Returns:
        A rebuilt model (Sequential/Functional) or `model` itself converted
        in place (subclassed). Either way, compiled like `model` was, with
        the same loss, metrics and a fresh optimizer of the same config.
    """
    converter = _Converter(replacements)
    converted = converter.convert(model)
    converter.commit()
    for graph in converter.in_place_graphs:
        _record_replaced_layers(graph, replacements.values())
    if getattr(model, "compiled", False):
        compile_like(converted, model)
    return converted


def copy_model(model):
    """A copy of `model` of the same class that shares no layer with it.

    Sequential and Functional models are cloned layer by layer
    (`keras.models.clone_model`) and given the source's weights; other
    models go through an in-memory `.keras` round trip (or, for a class that
    is not registered with Keras, its own `from_config` and build config, then
    the source's weights). A subclassed model that cannot be re-created from
    its config, such as one whose `__init__` takes no argument and that
    defines no `get_config()`, is constructed again with `type(model)()`,
    built on zeros shaped like the input it was built on, and given the
    source's layer names, `trainable` flags and weights, once its layers and
    variables are checked to match the source's. A compiled model's
    copy is compiled with the same loss and metric objects and a fresh
    optimizer of the same configuration. LoRA enabled on a layer that its
    parent builds (KerasHub's `backbone.enable_lora`) is enabled on the
    copy's layer too, with the same rank and alpha.

    Raises:
        ValueError: when the model cannot be copied: a layer of the model
            cannot be re-created from its config (a custom layer without
            `get_config`), or a subclassed model whose `__init__` needs
            arguments cannot be re-created from its config.
    """
    try:
        if is_graph_model(model) and is_rebuildable(model):
            with _keras_private.compiled_flag_off(model):
                clone = keras.models.clone_model(model)
            if not clone.built and model.built:
                clone.build(model.input_shape)
            _copy_lora(model, clone)
            clone.set_weights(model.get_weights())
            _copy_vocabularies(model, clone)
        else:
            clone = _copy_subclassed(model)
    except _NotCopyable as error:
        raise ValueError(
            f"Cannot copy model '{model.name}' ({type(model).__name__}) to keep the "
            f"original untouched: {error}"
        ) from error.__cause__
    except Exception as error:  # noqa: BLE001 - any failure means "not copyable"
        raise ValueError(
            f"Cannot copy model '{model.name}' ({type(model).__name__}) to keep the "
            f"original untouched: {_first_paragraph(error)}. "
            f"{_SUGGESTION}"
        ) from error
    if getattr(model, "compiled", False):
        compile_like(clone, model)
    return clone


_SUGGESTION = (
    "Give its custom layers a `get_config()`, or pass `share_layers=True` to convert "
    "the model's own layers (the original then changes too)."
)


class _NotCopyable(Exception):
    """Why a subclassed model could be copied neither from its config nor anew."""


def _first_paragraph(error):
    # Keras' errors are paragraphs of wrapped lines: the first paragraph,
    # on one line, says what went wrong.
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return " ".join(text.split("\n\n")[0].split())


def _copy_subclassed(model):
    """A `.keras` round trip, else a new instance given the source's weights."""
    try:
        clone = _copy_through_keras_file(model)
    except Exception as error:  # noqa: BLE001 - tried anew below
        config_error = error
    else:
        old_layers = _keras_private.flatten_layers(model)
        new_layers = _keras_private.flatten_layers(clone)
        # `from_config` re-creates layers named by the class without a
        # `name` with new automatic names.
        if [type(layer) for layer in new_layers] == [type(layer) for layer in old_layers]:
            _copy_names(old_layers, new_layers)
        return clone
    cls = type(model)
    required = _required_init_arguments(cls)
    if required:
        names = ", ".join(f"`{name}`" for name in required)
        if _defines(cls, "get_config"):
            reason = (
                f"re-creating it from its config failed ({_first_paragraph(config_error)}), "
                f"and its `__init__` needs argument(s) {names}. Make `get_config()` return "
                "every `__init__` argument (and define `from_config()` for those that are "
                "not plain values)"
            )
        else:
            reason = (
                f"its `__init__` needs argument(s) {names} and {cls.__name__} has no "
                "`get_config()` to re-create it from. Define `get_config()` returning those "
                "arguments (and `from_config()` for those that are not plain values), give "
                "each of them a default"
            )
        raise _NotCopyable(
            f"{reason}, or pass `share_layers=True` to convert the model's own layers "
            "(the original then changes too)."
        ) from config_error
    try:
        return _copy_by_construction(model)
    except Exception as error:  # noqa: BLE001 - both ways failed: say both
        raise _NotCopyable(
            f"re-creating it from its config failed ({_first_paragraph(config_error)}), "
            f"and so did constructing `{cls.__name__}()` anew with its weights "
            f"({_first_paragraph(error)}). {_SUGGESTION}"
        ) from error


def _required_init_arguments(cls):
    """The names of the arguments `cls(...)` cannot be called without."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    return [
        p.name for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty
    ]


def _defines(cls, attribute):
    """Whether a class of `cls`'s own, not Keras', defines `attribute`."""
    for klass in cls.__mro__:
        if klass.__module__.startswith("keras.") or klass.__module__ == "keras":
            return False
        if attribute in vars(klass):
            return True
    return False


def _copy_by_construction(model):
    """`type(model)()`, built like `model` and given its names and weights.

    The new instance's layers are created by its own `__init__` (and
    `build`), so nothing of the source is shared; they are paired with the
    source's in Keras' walk order and must match class for class and
    variable for variable before any weight is copied.
    """
    clone = type(model)()
    old_layers = _keras_private.flatten_layers(model)
    # Named before building, so that the variables' paths are the source's.
    if [type(layer) for layer in _keras_private.flatten_layers(clone)] == [
        type(layer) for layer in old_layers
    ]:
        _copy_names(old_layers, _keras_private.flatten_layers(clone))
    if model.built:
        _build_like(clone, model)
    new_layers = _keras_private.flatten_layers(clone)
    old_classes = [type(layer).__name__ for layer in old_layers]
    new_classes = [type(layer).__name__ for layer in new_layers]
    if old_classes != new_classes:
        raise ValueError(
            f"the new instance's layers {new_classes} differ from the model's {old_classes}"
        )
    old_variables = [(tuple(v.shape), v.dtype) for v in model.weights]
    new_variables = [(tuple(v.shape), v.dtype) for v in clone.weights]
    if old_variables != new_variables:
        raise ValueError(
            f"the new instance's variables (shape, dtype) {new_variables} differ from "
            f"the model's {old_variables}"
        )
    _copy_names(old_layers, new_layers)
    # Parents first (Keras' walk order): a parent's flag reaches its
    # sublayers, then each sublayer gets its own.
    for old, new in zip(old_layers, new_layers):
        new.trainable = old.trainable
    clone.set_weights(model.get_weights())
    _copy_vocabularies(model, clone)
    return clone


def _copy_names(old_layers, new_layers):
    # Auto-generated names are unique per session (`embedding_1`); layer
    # paths (`layer_names`, reports) need the source's.
    for old, new in zip(old_layers, new_layers):
        new.name = old.name


def _build_like(clone, model):
    """Builds `clone` on zeros shaped like the inputs `model` was built on.

    Calling it (as `model` was when first called on data) creates the
    variables that its `call` creates; `build_from_config` is the fallback
    for a model whose `call` zeros of either dtype do not suit.
    """
    config = model.get_build_config() or {}
    if "input_shape" in config:
        args, kwargs = [config["input_shape"]], {}
    elif "shapes_dict" in config:
        # `{"<argument>_shape": shape}`, one per tensor argument of `call`.
        args = []
        kwargs = {name[: -len("_shape")]: shape for name, shape in config["shapes_dict"].items()}
    else:
        raise ValueError(
            "it was built without a recorded input shape (`get_build_config()` is "
            f"{model.get_build_config()!r})"
        )

    def zeros(shape, dtype):
        return keras.tree.map_shape_structure(
            lambda s: np.zeros([1 if d is None else d for d in s], dtype), shape
        )

    # Float zeros suit most inputs (an `Embedding` casts them to ids); int
    # zeros the models whose `call` indexes with its input itself.
    for dtype in ("float32", "int32"):
        try:
            clone(
                *[zeros(shape, dtype) for shape in args],
                **{name: zeros(shape, dtype) for name, shape in kwargs.items()},
            )
            return
        except Exception:  # noqa: BLE001 - the next dtype, then the build config
            continue
    clone.build_from_config(config)


def _copy_through_keras_file(model):
    """A `.keras` round trip in memory; for an unregistered class, its own config."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        with _keras_private.compiled_flag_off(model):
            model.save(path)
        try:
            # The model is the caller's own object, not a file from
            # elsewhere: its Lambda layers may be re-created.
            return keras.saving.load_model(path, compile=False, safe_mode=False)
        except TypeError:
            # "Could not locate class": a subclassed model defined in a script
            # or a test and never registered. Its class is at hand, so it is
            # re-created from its own config and build config.
            clone = type(model).from_config(model.get_config())
            clone.build_from_config(model.get_build_config())
            clone.set_weights(model.get_weights())
            return clone


def _copy_lora(source, clone):
    # LoRA enabled on layers a parent builds (KerasHub's `enable_lora` on a
    # backbone's projections) is state outside the parent's config: the
    # clone's layers get the same rank and alpha before the weights, LoRA's
    # included, are copied.
    pairs = zip(_keras_private.flatten_layers(source), _keras_private.flatten_layers(clone))
    for old, new in pairs:
        if getattr(old, "lora_enabled", False) and type(new) is type(old) and not new.lora_enabled:
            new.enable_lora(old.lora_rank, lora_alpha=old.lora_alpha)


def _copy_vocabularies(source, clone):
    # A lookup's adapted vocabulary is state outside its config and weights:
    # `clone_model` re-creates the layer empty.
    lookups = (keras.layers.TextVectorization, keras.layers.StringLookup, keras.layers.IntegerLookup)
    pairs = zip(_keras_private.flatten_layers(source), _keras_private.flatten_layers(clone))
    for old, new in pairs:
        if isinstance(old, lookups) and type(new) is type(old):
            vocabulary = old.get_vocabulary(include_special_tokens=False)
            if vocabulary and new.get_vocabulary(include_special_tokens=False) != vocabulary:
                idf = getattr(old, "idf_weights", None) if getattr(old, "output_mode", None) == "tf_idf" else None
                new.set_vocabulary(vocabulary, idf_weights=idf)


def compile_like(target, source):
    """Compiles `target` with `source`'s loss and metrics and a fresh, unbuilt optimizer.

    The loss and metric *objects* are reused (a lambda or an unregistered
    function works, unlike `compile_from_config`); metric objects are
    re-created from their config so the two models never share state.
    """
    optimizer = source.optimizer
    if optimizer is not None:
        optimizer = optimizer.__class__.from_config(optimizer.get_config())
    metrics, weighted_metrics = _keras_private.compiled_metrics(source)
    target.compile(
        optimizer=optimizer if optimizer is not None else "rmsprop",
        loss=source.loss,
        loss_weights=_keras_private.compiled_loss_weights(source),
        metrics=fresh_metrics(metrics),
        weighted_metrics=fresh_metrics(weighted_metrics),
    )
    # The optimizer is left unbuilt: a `.keras` file saved before any
    # training then holds the weights alone, not two zero Adam moments per
    # weight (three times the file). Loading such a file, Keras builds the
    # optimizer and says once that it skipped loading its (empty) state.


def fresh_metrics(metrics):
    """`metrics` with every metric object re-created from its config (never shared by two models)."""
    if metrics is None:
        return None

    def fresh(metric):
        if isinstance(metric, keras.metrics.Metric):
            try:
                return metric.__class__.from_config(metric.get_config())
            except Exception:  # noqa: BLE001 - keep the object when it cannot be rebuilt
                return metric
        return metric

    return keras.tree.map_structure(fresh, metrics)


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
        self.in_place_graphs = []

    def convert(self, layer):
        key = id(layer)
        if key in self.converted:
            return self.converted[key]
        if key in self.replacements:
            result = self.replacements[key]
        elif not self._holds_target(layer):
            result = layer
        elif is_graph_model(layer) and is_rebuildable(layer):
            result = self._rebuild(layer)
        elif is_graph_model(layer):
            # `clone_model` would return a plain Functional: swap inside.
            self.converted[key] = layer
            self._plan_graph_swaps(layer)
            result = layer
        else:
            # Registered first so that a layer reachable from itself
            # (a cycle through attributes) is not planned twice.
            self.converted[key] = layer
            self._plan_swaps(layer)
            result = layer
        self.converted[key] = result
        return result

    def commit(self):
        done = []
        try:
            for swap in self.swaps:
                swap.apply()
                done.append(swap)
            for model in self.in_place_models:
                _reset_compiled_functions(model)
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
        # Compiled below with the original loss objects, not from the
        # serialized config that `clone_model` would use.
        with _keras_private.compiled_flag_off(model):
            rebuilt = keras.models.clone_model(model, clone_function=self.convert)
        if not rebuilt.built and model.built:
            # A Sequential model without an input layer is only built when
            # first called; build it now as the original was.
            rebuilt.build(model.input_shape)
        return rebuilt

    def _plan_graph_swaps(self, model):
        self.in_place_models.append(model)
        self.in_place_graphs.append(model)
        for operation in _graph_operations(model):
            new = self.convert(operation)
            if new is not operation:
                self.swaps.append(_GraphSwap(model, operation, new))
        for attribute, value, key, child in _attribute_children(model):
            new = self.convert(child)
            if new is not child:
                self.swaps.append(_Swap(model, attribute, key, child, new))

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
                    f"Cannot replace a layer inside layer "
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
        _replace_tracked(self.owner, old, new)
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


def _replace_tracked(owner, old, new):
    """Puts `new` in `old`'s place in `owner`'s tracked sublayers.

    At the same position, so the order of `model.weights` (and of saved
    variables) stays that of the original.
    """
    tracker = getattr(owner, "_tracker", None)
    if tracker is not None and tracker.is_in_store("layers", old):
        if tracker.is_in_store("layers", new):
            tracker.untrack(old)
        else:
            tracker.replace_tracked_value("layers", old, new)


class _GraphSwap:
    """One layer of a Functional model's graph replaced by another, in place.

    The graph's nodes call `node.operation`; the node list, the operation
    lists and the model's tracked sublayers are updated so that execution,
    `model.layers` and `model.weights` see the new layer.
    """

    def __init__(self, model, old, new):
        self.model = model
        self.old = old
        self.new = new

    def apply(self):
        self._set(self.old, self.new)

    def undo(self):
        self._set(self.new, self.old)

    def _set(self, old, new):
        _replace_tracked(self.model, old, new)
        _replace_in_graph(self.model, old, new)


def dense_table_class(layer):
    """The Keras class of `layer`'s dense table when it can be converted, else None.

    Convertible: a `keras.layers.Embedding` or `keras.layers.ReversibleEmbedding`,
    or a subclass of either that only renames it, overriding nothing (such as
    `keras_hub.layers.ReversibleEmbedding`). Other subclasses may use their
    table outside `call` and are left alone.

    Returns:
        `keras.layers.ReversibleEmbedding`, `keras.layers.Embedding` or `None`.
    """
    for base in (keras.layers.ReversibleEmbedding, keras.layers.Embedding):
        if isinstance(layer, base) and _only_renames(type(layer), base):
            return base
    return None


def _only_renames(cls, base):
    allowed = {"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__",
               "__firstlineno__", "__static_attributes__", "__annotations__"}
    for klass in cls.__mro__:
        if klass is base:
            return True
        if set(vars(klass)) - allowed:
            return False
    return False


def find_embeddings(model, *, include_factorized=False):
    """Returns `[(path, layer)]` for every distinct embedding layer of `model`.

    Searches nested models and subclassed models' attributes; a layer shared
    by several call sites is listed once, in model order. The path is the
    `/`-separated layer names below `model`, as in `ConversionReport`.

    Args:
        model: A Keras model (any kind).
        include_factorized: By default only the dense tables that
            `factorize_embeddings` converts (see `dense_table_class`:
            `Embedding`, `ReversibleEmbedding` and renaming subclasses), also
            inside a `PrunedEmbedding`. If `True`, every table of a kind in
            `keras_lowrank.layers.table_kinds` (any `keras.layers.Embedding`,
            subclasses included, `LowRankEmbedding`, `CodebookEmbedding`)
            and every `PrunedEmbedding` (as one table) are listed (what
            inspection and byte counting need).

    Returns:
        A list of `(path, layer)` pairs.
    """
    if include_factorized:
        def wanted(layer):
            return table_kinds.is_table(layer)
    else:
        def wanted(layer):
            return dense_table_class(layer) is not None
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
    if is_graph_model(layer):
        return list(layer.layers)
    children = [child for *_, child in _attribute_children(layer)]
    ids = {id(child) for child in children}
    # Sublayers tracked but held elsewhere (e.g. in a nested container) are
    # still searched, so that such an Embedding is reported, not ignored.
    children += [c for c in getattr(layer, "_layers", ()) if id(c) not in ids]
    return children


# TensorFlow's trackable bookkeeping (`tensorflow/python/trackable`), which
# repeats every tracked sublayer. Named one by one: a layer's own attribute
# may begin with `_self_` too (KerasHub's `_self_attention_layer`).
_TRACKABLE_ATTRIBUTES = frozenset(
    {
        "_self_attribute_sentinel",
        "_self_destruction_context",
        "_self_external_modification",
        "_self_extra_variables",
        "_self_last_wrapped_dict_snapshot",
        "_self_name_based_restores",
        "_self_non_string_key",
        "_self_saveable_object_factories",
        "_self_setattr_tracking",
        "_self_trainable",
        "_self_tuple_is_constructable",
        "_self_unconditional_checkpoint_dependencies",
        "_self_unconditional_deferred_dependencies",
        "_self_unconditional_dependency_names",
        "_self_update_uid",
    }
)


def _attribute_children(owner):
    """Yields (attribute, value, key, layer) for layers held by attributes."""
    for attribute, value in list(vars(owner).items()):
        if attribute in _BOOKKEEPING_ATTRIBUTES or attribute in _TRACKABLE_ATTRIBUTES:
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


def is_graph_model(layer):
    """Whether `layer` is a Sequential or Functional model (or a subclass)."""
    return isinstance(layer, (keras.Sequential, _keras_private.Functional))


def is_rebuildable(model):
    """Whether `clone_model` rebuilds `model` with its class (else: in place).

    Sequential models and plain Functional ones are; subclasses of
    Functional with their own constructor (KerasHub `Backbone`, `Task`)
    come back as a plain Functional and lose their class.
    """
    base = _converted_base(type(model))
    return issubclass(base, keras.Sequential) or base is _keras_private.Functional


# Keeping the class of a model converted in place through `.keras` files.
#
# `BertBackbone.from_config` rebuilds a dense `ReversibleEmbedding` from its
# hyperparameters. A model whose attributes (not those of nested models) hold
# a replaced layer therefore becomes an instance of a subclass of its class,
# same name and module, whose config also lists the replaced layers by
# attribute path; it is registered as `keras_lowrank>ConvertedModel`, whose
# `from_config` builds the original class from its config and installs the
# listed layers again (before Keras loads the weights into them).

_CONVERTED_NAME = "keras_lowrank>ConvertedModel"
_CONVERTED_KEY = "keras_lowrank_converted"
_CONVERTED_CLASSES = {}


def _record_replaced_layers(model, new_layers):
    wanted = {id(layer) for layer in new_layers}
    paths = [path for path, layer in _attribute_paths(model) if id(layer) in wanted]
    if not paths:
        return
    previous = list(getattr(model, "_keras_lowrank_paths", ()))
    paths = previous + [p for p in paths if p not in previous]
    object.__setattr__(model, "_keras_lowrank_paths", tuple(paths))
    object.__setattr__(model, "__class__", _converted_class(_converted_base(type(model))))


def _attribute_paths(model):
    """`[(path, layer)]` for layers held by attributes, not entering models."""
    found, seen = [], {id(model)}

    def walk(owner, prefix):
        for attribute, _, key, child in _attribute_children(owner):
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = prefix + ((attribute, key),)
            found.append((path, child))
            if not isinstance(child, keras.Model):
                walk(child, path)

    walk(model, ())
    return found


def _layer_at(model, path):
    layer = model
    for attribute, key in path:
        layer = getattr(layer, attribute)
        if key is not None:
            layer = layer[key]
    return layer


def _converted_base(cls):
    return getattr(cls, "_keras_lowrank_base", cls)


def _converted_class(base):
    if base not in _CONVERTED_CLASSES:

        def get_config(self):
            config = base.get_config(self)
            config[_CONVERTED_KEY] = {
                "module": base.__module__,
                "class_name": base.__name__,
                "registered_name": keras.saving.get_registered_name(base),
                "layers": [
                    {
                        "path": [list(step) for step in path],
                        "layer": keras.saving.serialize_keras_object(_layer_at(self, path)),
                    }
                    for path in self._keras_lowrank_paths
                ],
            }
            return config

        # `clone_model` re-creates a nested model with
        # `type(layer).from_config(config)`; the base's own `from_config`
        # would rebuild the dense tables.
        def from_config(klass, config):
            return ConvertedModel.from_config(config)

        cls = type(
            base.__name__,
            (base,),
            {
                "get_config": get_config,
                "from_config": classmethod(from_config),
                "_keras_lowrank_base": base,
                "__module__": base.__module__,
                "__qualname__": base.__qualname__,
                "__doc__": base.__doc__,
            },
        )
        keras.saving.register_keras_serializable("keras_lowrank", "ConvertedModel")(cls)
        # The name points every converted class to the one loader.
        keras.saving.get_custom_objects()[_CONVERTED_NAME] = ConvertedModel
        _CONVERTED_CLASSES[base] = cls
    return _CONVERTED_CLASSES[base]


class ConvertedModel:
    """Loads a model saved after conversion in place (see above)."""

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        record = config.pop(_CONVERTED_KEY)
        base = keras.saving.get_registered_object(record["registered_name"])
        if base is None:
            module = importlib.import_module(record["module"])
            base = getattr(module, record["class_name"])
        model = base.from_config(config)
        # Outermost first, one depth at a time: a layer replaced inside a
        # layer that was itself replaced (a pruned table's inner table,
        # swapped for a codebook after pruning) has its path only once that
        # layer is in. Layers of one depth go in together (one rebuild).
        depths = {}
        for entry in record["layers"]:
            depths.setdefault(len(entry["path"]), []).append(entry)
        for depth in sorted(depths):
            replacements = {}
            for entry in depths[depth]:
                path = tuple((attribute, key) for attribute, key in entry["path"])
                new = keras.saving.deserialize_keras_object(entry["layer"])
                if not new.built:
                    new.build()
                replacements[id(_layer_at(model, path))] = new
            model = replace_layers(model, replacements)
        return model


keras.saving.get_custom_objects()[_CONVERTED_NAME] = ConvertedModel


def _graph_operations(model):
    # Private Keras: the operations of a Functional graph (`Function._operations`).
    return list(model._operations)


def _replace_in_graph(model, old, new):
    """Points every node of `model`'s graph that calls `old` to `new`.

    Private Keras (no public way to edit a built graph): `Function._operations`,
    `_operations_by_depth`, `_nodes_by_depth`, `Node.operation` and the layers'
    `_inbound_nodes`.
    """
    operations = model._operations
    for index, operation in enumerate(operations):
        if operation is old:
            operations[index] = new
    for depth_operations in model._operations_by_depth.values():
        for index, operation in enumerate(depth_operations):
            if operation is old:
                depth_operations[index] = new
    for node in [n for nodes in model._nodes_by_depth.values() for n in nodes]:
        if node.operation is old:
            node.operation = new
            if node not in new._inbound_nodes:
                new._inbound_nodes.append(node)


def _reset_compiled_functions(model):
    # Traced train/test/predict functions captured the old layer's
    # variables; drop them so that the next call traces the new graph.
    for name in ("train_function", "test_function", "predict_function"):
        if hasattr(model, name):
            setattr(model, name, None)


def normalize_layer_names(layer_names):
    """`layer_names` as a list of names, or None; a clear error for anything else."""
    if layer_names is None:
        return None
    names = [layer_names] if isinstance(layer_names, str) else layer_names
    if isinstance(names, (dict, set, frozenset)) or not hasattr(names, "__iter__"):
        # A dict's keys or a set's order would be a silent guess.
        names = None
    else:
        names = list(names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            "Expected `layer_names` to be None, a layer name or a non-empty "
            "list of layer names, received: "
            f"layer_names={layer_names!r}"
        )
    return names


def select_layers(found, layer_names):
    """The `(path, layer)` pairs of `found` named by `layer_names` (all if None).

    A name matches a layer's own name or its `/`-separated path; an unknown
    name is an error listing the tables found.
    """
    requested = normalize_layer_names(layer_names)
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
            f"the model's embedding tables are {available}. Received: "
            f"layer_names={layer_names!r}"
        )
    return [
        (path, layer)
        for path, layer in found
        if any(_matches(name, path, layer) for name in requested)
    ]


def _matches(name, path, layer):
    return name == path or name == layer.name
