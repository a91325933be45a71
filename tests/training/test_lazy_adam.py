"""`LazyAdam`: sparse rows follow Adam's formulas lazily, dense gradients are Adam's.

The sparse update is checked against an independent numpy reference (float64,
written from Kingma & Ba's formulas, not from the implementation); the dense
update against `keras.optimizers.Adam` itself. Sparse (`tf.IndexedSlices`)
gradients exist on the TensorFlow backend only, so those tests are skipped on
JAX and PyTorch, where every gradient is dense and `LazyAdam` is Adam.
"""

import numpy as np
import pytest

import keras

from keras_lowrank.training import LazyAdam

pytestmark = pytest.mark.backend_agnostic

TENSORFLOW = keras.backend.backend() == "tensorflow"
needs_sparse = pytest.mark.skipif(
    not TENSORFLOW, reason="sparse (IndexedSlices) gradients exist on the TensorFlow backend only"
)

BETA_1, BETA_2, EPSILON, LR = 0.9, 0.999, 1e-7, 0.01

# Three steps on a 6 x 3 table: duplicates (row 1 twice), a row touched in
# one step only (row 4), a row never touched (row 5).
SPARSE_STEPS = [
    ([1, 3, 1], [[1.0, -2.0, 0.5], [0.3, 0.0, -1.0], [2.0, 1.0, -0.5]]),
    ([4, 0], [[-1.0, 0.5, 0.25], [0.1, 0.2, 0.3]]),
    ([3, 1, 3, 0], [[0.5, 0.5, 0.5], [-1.0, 0.0, 1.0], [0.25, -0.25, 2.0], [1.0, 1.0, 1.0]]),
]


def _numpy_lazy_adam(table, steps, amsgrad=False):
    """Lazy Adam in float64: duplicates summed, touched rows updated, others kept."""
    w = table.astype("float64")
    m, v, v_hat = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t, (indices, values) in enumerate(steps, start=1):
        g = {}
        for i, row in zip(indices, np.asarray(values, "float64")):
            g[i] = g.get(i, 0.0) + row
        for i, g_i in g.items():
            m[i] = BETA_1 * m[i] + (1 - BETA_1) * g_i
            v[i] = BETA_2 * v[i] + (1 - BETA_2) * g_i**2
            v_hat[i] = np.maximum(v_hat[i], v[i])
            # Keras' epsilon is the paper's "epsilon hat": added to sqrt(v)
            # after the bias correction is folded into the step size.
            step_size = LR * np.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
            w[i] -= step_size * m[i] / (np.sqrt(v_hat[i] if amsgrad else v[i]) + EPSILON)
    return w, m, v


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _optimizer(cls=LazyAdam, **kwargs):
    return cls(learning_rate=LR, beta_1=BETA_1, beta_2=BETA_2, epsilon=EPSILON, **kwargs)


@needs_sparse
@pytest.mark.parametrize("mode", ["eager", "graph", "jit_compile"])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_sparse_gradient_follows_the_numpy_reference(mode, amsgrad):
    import tensorflow as tf

    table = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    variable = keras.Variable(table, name="table")
    optimizer = _optimizer(amsgrad=amsgrad)
    optimizer.build([variable])

    def apply(indices, values):
        optimizer.apply_gradients([(tf.IndexedSlices(values, indices), variable)])

    if mode != "eager":
        apply = tf.function(apply, jit_compile=mode == "jit_compile")
    for indices, values in SPARSE_STEPS:
        apply(tf.constant(indices, "int32"), tf.constant(values, "float32"))

    w, m, v = _numpy_lazy_adam(table, SPARSE_STEPS, amsgrad=amsgrad)
    slots = [s for s in optimizer.variables if tuple(s.shape) == (6, 3)]
    np.testing.assert_allclose(_numpy(variable), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_numpy(slots[0]), m, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_numpy(slots[1]), v, rtol=1e-5, atol=1e-9)
    # Row 5 never appeared: its weights are bit for bit the initial ones.
    np.testing.assert_array_equal(_numpy(variable)[5], table[5])
    np.testing.assert_array_equal(_numpy(slots[0])[5], 0.0)


@needs_sparse
def test_rows_touched_once_get_adams_update():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    table = rng.normal(size=(5, 4)).astype("float32")
    lazy, dense = keras.Variable(table), keras.Variable(table)
    lazy_adam, adam = _optimizer(), _optimizer(keras.optimizers.Adam)
    for _ in range(3):
        gradient = rng.normal(size=(5, 4)).astype("float32")
        # Every row once, in shuffled order: the lazy update is Adam's.
        order = rng.permutation(5)
        lazy_adam.apply_gradients(
            [(tf.IndexedSlices(tf.constant(gradient[order]), tf.constant(order)), lazy)]
        )
        adam.apply_gradients([(tf.constant(gradient), dense)])
    np.testing.assert_allclose(_numpy(lazy), _numpy(dense), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_dense_gradient_is_adam(amsgrad):
    rng = np.random.default_rng(2)
    table = rng.normal(size=(7, 3)).astype("float32")
    lazy, dense = keras.Variable(table), keras.Variable(table)
    lazy_adam = _optimizer(amsgrad=amsgrad)
    adam = _optimizer(keras.optimizers.Adam, amsgrad=amsgrad)
    for _ in range(4):
        # Tensors, not numpy arrays: PyTorch's fused Adam takes tensors only.
        gradient = keras.ops.convert_to_tensor(rng.normal(size=(7, 3)).astype("float32"))
        lazy_adam.apply([gradient], [lazy])
        adam.apply([gradient], [dense])
    if keras.backend.backend() == "torch":
        # On PyTorch `keras.optimizers.Adam` builds Keras' fused `_foreach`
        # Adam, which rounds `m * beta_1 + g * (1 - beta_1)` differently from
        # the generic `m + (g - m) * (1 - beta_1)` a subclass inherits.
        np.testing.assert_allclose(_numpy(lazy), _numpy(dense), rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(_numpy(lazy), _numpy(dense))


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,), dtype="int32")
    x = keras.layers.Embedding(20, 4, name="embedding")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))


def _compile(model, optimizer, jit_compile):
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


# Two batches: the first looks up rows 1, 2 (and 5), the second rows 3, 4;
# rows 6 to 19 are never looked up.
IDS = np.array([[1, 2, 5], [2, 1, 1], [3, 4, 3], [4, 4, 3]], "int32")
LABELS = np.array([0, 1, 1, 0], "int32")


def _jit_modes():
    # PyTorch's `jit_compile=True` is torch.compile, out of scope here.
    return [False] if keras.backend.backend() == "torch" else [False, True]


@pytest.mark.parametrize("jit_compile", _jit_modes())
def test_fit_updates_only_looked_up_rows(jit_compile):
    model = _compile(_model(), LazyAdam(learning_rate=0.1), jit_compile)
    before = _numpy(model.get_layer("embedding").embeddings)
    model.fit(IDS, LABELS, batch_size=2, epochs=2, shuffle=False, verbose=0)
    after = _numpy(model.get_layer("embedding").embeddings)
    assert not np.allclose(after[1:6], before[1:6])
    np.testing.assert_array_equal(after[6:], before[6:])
    assert not np.allclose(_numpy(model.get_layer("logits").kernel), 0.0)


@needs_sparse
@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_keeps_moments_of_rows_not_in_the_batch(jit_compile):
    # Same data and weights with Adam and LazyAdam, one epoch of two batches:
    # Adam decays the first moment of row 1 (absent from the second batch)
    # by beta_1; LazyAdam leaves it as the first batch set it.
    moments = {}
    for cls in (keras.optimizers.Adam, LazyAdam):
        model = _compile(_model(), cls(learning_rate=0.1), jit_compile)
        model.fit(IDS, LABELS, batch_size=2, epochs=1, shuffle=False, verbose=0)
        moments[cls] = _embedding_momentum(model)
    np.testing.assert_allclose(
        moments[LazyAdam][1], moments[keras.optimizers.Adam][1] / 0.9, rtol=1e-5
    )


def _embedding_momentum(model):
    # Adam's slots are created in the order of `trainable_variables`, the
    # momentum of each first; the embedding table is the first variable.
    shape = tuple(model.get_layer("embedding").embeddings.shape)
    return _numpy(next(v for v in model.optimizer.variables if tuple(v.shape) == shape))


@pytest.mark.parametrize("amsgrad", [False, True])
def test_keras_file_round_trip_keeps_optimizer_and_state(tmp_path, amsgrad):
    model = _compile(_model(), LazyAdam(learning_rate=0.05, beta_2=0.99, amsgrad=amsgrad), False)
    model.fit(IDS, LABELS, batch_size=2, epochs=2, shuffle=False, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)

    assert type(loaded.optimizer) is LazyAdam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert int(_numpy(loaded.optimizer.iterations)) == 4
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(_numpy(restored), _numpy(saved))
    # Training goes on from the restored moments: one more epoch of each
    # model lands on the same weights.
    for m in (model, loaded):
        m.fit(IDS, LABELS, batch_size=2, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_config_round_trip_by_registered_name():
    optimizer = LazyAdam(learning_rate=0.02, beta_1=0.8, amsgrad=True)
    config = keras.saving.serialize_keras_object(optimizer)
    assert config["registered_name"] == "keras_lowrank>LazyAdam"
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is LazyAdam
    assert restored.get_config() == optimizer.get_config()
