"""The private Keras internals of `keras_lowrank._keras_private` still behave as relied on.

A Keras upgrade that renames or changes any of them fails here, by name,
instead of deep inside a surgery or an export. The package itself imports
`keras.src` nowhere else.
"""

import os
import re

import numpy as np
import pytest

import keras

from keras_lowrank import _keras_private

pytestmark = pytest.mark.backend_agnostic

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "keras_lowrank")


def _model():
    inputs = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(10, 3, name="embedding")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))


# Files still being moved to public names by their owners; a file listed
# here that no longer imports `keras.src` (or is gone) fails the test, so the
# list only shrinks.
PENDING = set()


def test_keras_src_is_imported_only_here():
    offenders = []
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py") or name == "_keras_private.py":
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as file:
                if re.search(r"^\s*(from|import)\s+keras\.src\b", file.read(), re.M):
                    offenders.append(os.path.relpath(path, PACKAGE))
    assert sorted(set(offenders) - PENDING) == []
    assert sorted(PENDING - set(offenders)) == [], "remove these from PENDING"


def test_functional_is_the_class_of_graph_models():
    model = _model()
    assert isinstance(model, _keras_private.Functional)
    assert _keras_private.is_functional(model)

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert not _keras_private.is_functional(Subclassed())


def test_flatten_layers_walks_attribute_held_sublayers():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Dense(2, name="inner")

        def call(self, x):
            return self.inner(x)

    block = Block(name="block")
    names = [layer.name for layer in _keras_private.flatten_layers(block)]
    assert names == ["block", "inner"]
    assert [l.name for l in _keras_private.flatten_layers(block, include_self=False)] == ["inner"]


def test_compile_arguments_are_recoverable():
    model = _model()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    metric = keras.metrics.SparseCategoricalAccuracy(name="acc")
    model.compile("adam", loss, metrics=[metric], weighted_metrics=["accuracy"], loss_weights=[0.5])
    metrics, weighted = _keras_private.compiled_metrics(model)
    assert metrics == [metric]
    assert weighted == ["accuracy"]
    assert _keras_private.compiled_loss_weights(model) == [0.5]


def test_compiled_flag_off_is_restored():
    model = _model()
    model.compile("adam", "mse")
    assert model.compiled is True
    with _keras_private.compiled_flag_off(model):
        assert model.compiled is False
        keras.models.clone_model(model)
    assert model.compiled is True


def test_inner_lookup_of_text_vectorization():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TextVectorization needs TensorFlow")
    layer = keras.layers.TextVectorization(vocabulary=["a", "b"])
    inner = _keras_private.inner_lookup(layer)
    assert isinstance(inner, keras.layers.StringLookup)
    assert inner.get_vocabulary()[-2:] == ["a", "b"]


def test_output_on_tells_the_calls_of_a_shared_layer_apart():
    shared = keras.layers.Dense(2)
    a, b = keras.Input((3,)), keras.Input((3,))
    out_a, out_b = shared(a), shared(b)
    assert _keras_private.output_on(shared, a) is out_a
    assert _keras_private.output_on(shared, b) is out_b
    assert _keras_private.output_on(shared, keras.Input((3,))) is None


def test_tracker_swaps_a_layer_in_place():
    model = _model()
    tracker = _keras_private.tracked_layers(model)
    old = model.get_layer("logits")
    new = keras.layers.Dense(2, name="logits2")
    assert tracker.is_in_store("layers", old)
    tracker.replace_tracked_value("layers", old, new)
    assert tracker.is_in_store("layers", new) and not tracker.is_in_store("layers", old)


def test_set_keras_mask():
    x = keras.ops.ones((2, 3))
    mask = keras.ops.convert_to_tensor(np.array([[True, True, False]] * 2))
    _keras_private.set_keras_mask(x, mask)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(x._keras_mask), keras.ops.convert_to_numpy(mask))


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_slots_are_the_moments_of_a_variable(amsgrad):
    first = keras.Variable(np.zeros((3, 2), "float32"), name="first")
    second = keras.Variable(np.zeros((4,), "float32"), name="second")
    optimizer = keras.optimizers.Adam(learning_rate=0.1, amsgrad=amsgrad)
    optimizer.build([first, second])
    # Tensors, not numpy arrays: PyTorch's fused Adam takes tensors only.
    gradients = [np.zeros((3, 2), "float32"), np.full((4,), 2.0, "float32")]
    optimizer.apply([keras.ops.convert_to_tensor(g) for g in gradients])
    m, v, v_hat = _keras_private.adam_slots(optimizer, second)
    # After one step m = (1 - beta_1) g and v = (1 - beta_2) g^2.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(m), [0.2] * 4, rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(v), [0.004] * 4, rtol=1e-5)
    assert tuple(_keras_private.adam_slots(optimizer, first)[0].shape) == (3, 2)
    if amsgrad:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v_hat), [0.004] * 4, rtol=1e-5)
    else:
        assert v_hat is None


def test_freeze_concrete_function():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("freezing is the TensorFlow export route")
    import tensorflow as tf

    model = _model()
    ids = np.array([[1, 2, 3, 4]], "int32")
    serve = tf.function(lambda x: model(x, training=False))
    frozen = _keras_private.freeze_concrete_function(
        serve.get_concrete_function(tf.TensorSpec([None, 4], tf.int32))
    )
    assert not frozen.variables
    np.testing.assert_allclose(frozen(tf.constant(ids))[0], model(ids), rtol=1e-6)



@pytest.mark.parametrize(
    "equation, output_shape, bias_axes, input_shape",
    [
        ("ab,bc->ac", 6, "c", (5, 7)),
        ("abc,cde->abde", (None, 3, 4), "de", (2, 5, 8)),
        ("abcd,cde->abe", (None, 8), "e", (2, 5, 3, 4)),
    ],
)
def test_einsum_kernel_scale_lays_the_int8_scale_out_as_the_kernel(equation, output_shape, bias_axes, input_shape):
    layer = keras.layers.EinsumDense(equation, output_shape=output_shape, bias_axes=bias_axes)
    layer(np.random.default_rng(0).normal(size=input_shape).astype("float32"))
    kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
    layer.quantize("int8")
    scale = _keras_private.einsum_kernel_scale(layer)
    # Keras' int8 kernel: round(kernel * scale), one abs-max scale per output channel.
    codes = keras.ops.convert_to_numpy(layer.kernel).astype("float32")
    np.testing.assert_allclose(codes / scale, kernel, atol=np.abs(kernel).max() / 127 * 0.51)
    assert np.broadcast_shapes(scale.shape, kernel.shape) == kernel.shape
