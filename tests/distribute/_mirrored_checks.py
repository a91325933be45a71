"""Checks of keras_lowrank under `tf.distribute.MirroredStrategy` on 2 logical CPUs.

Run as a script in a fresh process (by `test_mirrored_strategy.py`): the
logical devices must be configured before TensorFlow initializes its devices,
which can only happen once per process. Each check runs independently; the
script prints one JSON line `{"check name": "ok" | "<traceback>"}` so the test
process can report every check separately without paying the TensorFlow start
up once per check.

Usage: python _mirrored_checks.py [CHECK ...]   (all checks when none given)
"""

import json
import os
import sys
import tempfile
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402

from _scenario import CLASSES, DIM, EPOCHS, GLOBAL_BATCH, LENGTH, RANK, STEPS, VOCAB  # noqa: E402
from _scenario import compile_for_fine_tune, data, functional_model  # noqa: E402
from _scenario import initial_weights, weights  # noqa: E402

from keras_lowrank.layers import LowRankEmbedding  # noqa: E402
from keras_lowrank.schedules import CyclicalLearningRate  # noqa: E402
from keras_lowrank.surgery import factorize_embeddings  # noqa: E402

DEVICES = ["/cpu:0", "/cpu:1"]


# One strategy for the whole process, as in a real program: separate
# MirroredStrategy objects in one process reuse the same collective-op keys,
# and a second one's all-reduce can collide with the first one's.
_STRATEGY = tf.distribute.MirroredStrategy(DEVICES)


def _strategy():
    return _STRATEGY


def _assert_mirrored(strategy, variable, where):
    """`variable` (a Keras variable) holds one synchronized copy per replica."""
    value = variable.value
    if not isinstance(value, tf.distribute.DistributedValues):
        raise AssertionError(f"{where}: {variable.path} is not distributed: {type(value)}")
    copies = strategy.experimental_local_results(value)
    if len(copies) != 2 or len({c.device for c in copies}) != 2:
        raise AssertionError(f"{where}: {variable.path} copies: {[c.device for c in copies]}")
    np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())


class _SubclassedClassifier(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding")
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.logits = keras.layers.Dense(CLASSES, name="logits")

    def call(self, ids):
        return self.logits(self.pool(self.embedding(ids)))


def check_layer_variables_are_mirrored():
    strategy = _strategy()
    with strategy.scope():
        layer = LowRankEmbedding(VOCAB, DIM, RANK)
        layer.build((None, LENGTH))
        for variable in (layer.lookup, layer.projection):
            _assert_mirrored(strategy, variable, "LowRankEmbedding built in scope")
        out = layer(np.array([[1, 2, 0]], dtype="int32"))
    if tuple(out.shape) != (1, 3, DIM):
        raise AssertionError(f"output shape {tuple(out.shape)}")


def check_from_embedding_in_scope_is_mirrored_and_exact():
    strategy = _strategy()
    with strategy.scope():
        embedding = keras.layers.Embedding(VOCAB, DIM)
        embedding.build((None,))
        table = np.random.default_rng(2).normal(size=(VOCAB, DIM)).astype("float32")
        embedding.embeddings.assign(table)
        layer = LowRankEmbedding.from_embedding(embedding, rank=RANK)
        for variable in (layer.lookup, layer.projection):
            _assert_mirrored(strategy, variable, "from_embedding in scope")
    product = np.array(layer.lookup.numpy() @ layer.projection.numpy(), dtype="float64")
    s = np.linalg.svd(table.astype("float64"), compute_uv=False)
    optimum = np.sqrt(np.sum(s[RANK:] ** 2))  # Eckart-Young
    error = np.linalg.norm(table - product)
    if not abs(error - optimum) <= 1e-4 * optimum:
        raise AssertionError(f"reconstruction error {error} vs Eckart-Young optimum {optimum}")


def check_factorize_embeddings_in_scope_gives_mirrored_model():
    strategy = _strategy()
    ids, _ = data()
    with strategy.scope():
        model = functional_model()
        model.set_weights(initial_weights())
        expected_hidden = [np.array(w) for w in model.get_layer("hidden").get_weights()]
        converted = factorize_embeddings(model, rank=RANK)
        layer = converted.get_layer("embedding")
        if not isinstance(layer, LowRankEmbedding):
            raise AssertionError(f"embedding not replaced: {type(layer)}")
        for variable in converted.weights:
            _assert_mirrored(strategy, variable, "converted model")
        for got, want in zip(converted.get_layer("hidden").get_weights(), expected_hidden):
            np.testing.assert_array_equal(got, want)
        # The distributed model predicts (per-replica batches) like a run.
        converted.predict(ids, batch_size=GLOBAL_BATCH, verbose=0)


def check_factorize_subclassed_model_in_scope():
    strategy = _strategy()
    ids, _ = data()
    with strategy.scope():
        model = _SubclassedClassifier(name="subclassed_classifier")
        model(ids[:2])
        converted = factorize_embeddings(model, rank=RANK, share_layers=True)
        if converted is not model:
            raise AssertionError("share_layers=True converts a subclassed model in place")
        if not isinstance(converted.embedding, LowRankEmbedding):
            raise AssertionError(f"embedding not replaced: {type(converted.embedding)}")
        for variable in converted.weights:
            _assert_mirrored(strategy, variable, "converted subclassed model")
        # The plain cyclical schedule here; the fine-tune check uses CALR.
        converted.compile(
            optimizer=keras.optimizers.SGD(
                CyclicalLearningRate(
                    initial_learning_rate=0.01, maximal_learning_rate=0.1, step_size=2
                )
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    before = weights(converted)
    converted.fit(ids, ids[:, 0] % CLASSES, batch_size=GLOBAL_BATCH, epochs=1, verbose=0)
    for variable in converted.weights:
        _assert_mirrored(strategy, variable, "subclassed model after fit")
    if all(np.array_equal(a, b) for a, b in zip(before, weights(converted))):
        raise AssertionError("fit did not change the converted subclassed model")


def check_distributed_fine_tune_matches_single_device():
    ids, labels = data()
    start = initial_weights()

    # Reference: one device, no strategy.
    model = functional_model()
    model.set_weights(start)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trained.keras")
        model.save(path)  # the usual hand-over: a trained model on disk
        single = factorize_embeddings(model, rank=RANK)
        compile_for_fine_tune(single)
        converted_start = weights(single)
        single.fit(ids, labels, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
        single_end = weights(single)

        # Distributed: load, convert, compile and fit inside the scope.
        strategy = _strategy()
        with strategy.scope():
            loaded = keras.models.load_model(path)
            mirrored = factorize_embeddings(loaded, rank=RANK)
            compile_for_fine_tune(mirrored)
        for variable in mirrored.weights:
            _assert_mirrored(strategy, variable, "fine-tuned model before fit")
        for got, want in zip(mirrored.get_weights(), converted_start):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        mirrored.fit(ids, labels, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
        mirrored_end = weights(mirrored)

    if int(mirrored.optimizer.iterations.numpy()) != STEPS:
        raise AssertionError(f"iterations {mirrored.optimizer.iterations.numpy()} != {STEPS}")
    for variable in mirrored.weights:
        _assert_mirrored(strategy, variable, "fine-tuned model after fit")
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(single_end, converted_start))
    if moved < 1e-2:
        raise AssertionError(f"training barely moved the weights ({moved}); the check is vacuous")
    for got, want in zip(mirrored_end, single_end):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


CHECKS = {
    name[len("check_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("check_")
}


def main(names):
    results = {}
    for name in names or list(CHECKS):
        try:
            CHECKS[name]()
            results[name] = "ok"
        except Exception:  # reported to the test process, which fails the test
            results[name] = traceback.format_exc()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
