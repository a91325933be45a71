"""The few private Keras internals keras_lowrank relies on, in one place.

Each use has no public equivalent in Keras 3.15; each line says why it is
needed. `tests/test_keras_private.py` checks every one of them, so a Keras
upgrade that changes them fails loudly there instead of somewhere deep in a
conversion. Everything else in the package uses public `keras.*` names only
(no `keras.src` import outside this module).

The private uses, one line each:
- `Functional` (`keras.src.models.functional`): the class of graph models; surgery and folding
  must tell a graph they can rebuild from a subclassed model.
- `Layer._flatten_layers`: Keras' own walk of a layer tree, including attribute-held sublayers.
- `model._compile_metrics` / `_compile_loss` internals: the user's compile arguments.
- `model.compiled`: skip `clone_model`'s recompile of an unserializable loss.
- `TextVectorization._lookup_layer`: the inner `StringLookup` and its vocabulary.
- `Layer._inbound_nodes`: where a layer shared by several models was called on a given tensor.
- `layer._tracker` (`is_in_store` / `replace_tracked_value` / `untrack`): swap a tracked
  sublayer in place, keeping the order of `model.weights` (used by `surgery.replace`).
- `keras.src.backend.set_keras_mask`: attach an implicit mask to a returned tensor.
- TensorFlow's `convert_to_constants`: freeze variables before the TFLite converter.
- Adam's `_momentums` / `_velocities` / `_velocity_hats` via `_get_variable_index`: the moment
  slots of one variable, for `training.LazyAdam`'s row-wise update.
- `EinsumDense._adjust_scale_for_dequant`: an int8 EinsumDense's kernel scale laid out as its
  kernel, to export the layer in float32 (`export.keras_quantized`).
"""

import contextlib

# The class of Functional models: `keras.Model(inputs, outputs)` returns one,
# and surgery must tell a graph it can rebuild from a subclassed model.
from keras.src.models.functional import Functional  # noqa: F401


def compiled_metrics(model):
    """`(metrics, weighted_metrics)` as given to `model.compile`.

    Keras keeps the user's lists only inside its `CompileMetrics` container;
    `model.metrics` holds built copies that cannot be passed to `compile`.
    """
    container = getattr(model, "_compile_metrics", None)
    if container is None:
        return None, None
    return (
        getattr(container, "_user_metrics", None),
        getattr(container, "_user_weighted_metrics", None),
    )


def compiled_loss_weights(model):
    """The `loss_weights` given to `model.compile` (no public accessor)."""
    container = getattr(model, "_compile_loss", None)
    return getattr(container, "_user_loss_weights", None)


@contextlib.contextmanager
def compiled_flag_off(model):
    """Makes `model` look uncompiled for the duration of the block.

    `keras.models.clone_model` recompiles a compiled model from its
    serialized compile config, which fails for a lambda or unregistered
    loss; with the flag off it skips that, and the caller compiles the clone
    with the original loss objects instead (`compiled` is a plain attribute
    set by `compile`).
    """
    was = getattr(model, "compiled", False)
    model.compiled = False
    try:
        yield
    finally:
        model.compiled = was


def flatten_layers(layer, include_self=True):
    """Every sublayer of `layer` (itself included by default), depth first.

    `_flatten_layers` is how Keras itself walks a layer tree (`model.quantize`
    uses it); there is no public walk that includes attribute-held sublayers
    of subclassed layers.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=True))


def set_keras_mask(tensor, mask):
    """Attaches `mask` to `tensor` as Keras' implicit mask (`_keras_mask`).

    For a layer whose `call` returns a tensor that must carry a mask its
    `compute_mask` cannot express; Keras exports no setter.
    """
    from keras.src.backend import set_keras_mask as _set_keras_mask

    _set_keras_mask(tensor, mask)


def is_functional(model):
    """Whether `model` is a Functional graph (a `Sequential` is one too)."""
    return isinstance(model, Functional)


def tracked_layers(owner):
    """The tracker of `owner`'s sublayers, or `None` (see `surgery.replace`).

    Replacing a sublayer through `_tracker.replace_tracked_value` keeps its
    position in `owner.weights`, so saved variables keep their order; Keras
    has no public way to swap a tracked sublayer.
    """
    return getattr(owner, "_tracker", None)


def freeze_concrete_function(concrete_function):
    """Variables of a `tf.function` folded into graph constants (TensorFlow only).

    `TFLiteConverter.from_concrete_functions` keeps untracked Keras 3
    variables as resources and writes a weightless model; freezing first is
    how TensorFlow's own converter does it, through a module TensorFlow does
    not export publicly.
    """
    from tensorflow.python.framework import convert_to_constants

    return convert_to_constants.convert_variables_to_constants_v2(concrete_function)


def adam_slots(optimizer, variable):
    """`(momentum, velocity, velocity_hat)` of `variable` in a built Keras Adam.

    `velocity_hat` is `None` unless `amsgrad`. Adam keeps its slots in lists
    indexed by `_get_variable_index` (the pattern of Keras' own subclassing
    example in `BaseOptimizer`); there is no public accessor, and a subclass
    that updates some rows itself must write Adam's own slots so that dense
    and sparse steps, and saved files, share one state.
    """
    index = optimizer._get_variable_index(variable)
    velocity_hat = optimizer._velocity_hats[index] if optimizer.amsgrad else None
    return optimizer._momentums[index], optimizer._velocities[index], velocity_hat


def inner_lookup(layer):
    """The `StringLookup` inside a `TextVectorization` (the layer itself otherwise).

    Its mask token and OOV count, and the fact that it is a second lookup of
    the same vocabulary, are only reachable through `_lookup_layer`.
    """
    return getattr(layer, "_lookup_layer", layer)



def output_on(layer, tensor):
    """The symbolic output of `layer` called on `tensor`, or `None` if never so called.

    `layer.output` is ambiguous once a layer is called in several graphs (a
    `TextVectorization` shared by a training and an inference model); its
    call nodes say which output came from which input.
    """
    for node in getattr(layer, "_inbound_nodes", None) or []:
        if len(node.input_tensors) == 1 and node.input_tensors[0] is tensor and len(node.output_tensors) == 1:
            return node.output_tensors[0]
    return None


def einsum_kernel_scale(layer):
    """An int8 `EinsumDense`'s kernel scale, broadcastable against its kernel (numpy).

    Keras lays the scale out for its int8 product (axes moved, expanded or
    squeezed by the equation) and undoes that only inside this method.
    """
    from keras import ops

    return ops.convert_to_numpy(layer._adjust_scale_for_dequant(layer.kernel_scale))
