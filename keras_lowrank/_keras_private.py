"""The few private Keras internals keras_lowrank relies on, in one place.

Each use has no public equivalent in Keras 3.15; each line says why it is
needed. `tests/test_keras_private.py` checks every one of them, so a Keras
upgrade that changes them fails loudly there instead of somewhere deep in a
conversion.
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


def flatten_layers(layer):
    """Every sublayer of `layer` (itself included), depth first.

    `_flatten_layers` is how Keras itself walks a layer tree (`model.quantize`
    uses it); there is no public walk that includes attribute-held sublayers
    of subclassed layers.
    """
    return list(layer._flatten_layers(include_self=True, recursive=True))


def inner_lookup(layer):
    """The `StringLookup` inside a `TextVectorization` (the layer itself otherwise).

    Its mask token and OOV count, and the fact that it is a second lookup of
    the same vocabulary, are only reachable through `_lookup_layer`.
    """
    return getattr(layer, "_lookup_layer", layer)
