"""`keras.distribution` on JAX: data-parallel fine-tune and row-sharded lookup factor.

Runs in a child process started with two host devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`, which must be set
before JAX initializes). Skipped on the other backends, whose distributed
training is `tf.distribute` (tests/distribute) or not covered.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import keras

pytestmark = pytest.mark.backend_agnostic

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    import keras
    import numpy as np
    import keras_lowrank

    assert len(jax.devices()) == 2, jax.devices()
    VOCAB, DIM, RANK, LENGTH = 64, 8, 4, 6
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB, size=(64, LENGTH)).astype("int32")
    y = rng.integers(0, 3, size=64)

    def fine_tune():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((LENGTH,), dtype="int32"),
            keras_lowrank.LowRankEmbedding(VOCAB, DIM, RANK, name="tokens"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3, name="logits"),
        ])
        model.compile(keras.optimizers.SGD(0.5),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return model

    single = fine_tune()
    with keras.distribution.DataParallel(devices=jax.devices()).scope():
        parallel = fine_tune()
    data_parallel = max(
        float(np.max(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b))))
        for a, b in zip(single.weights, parallel.weights)
    )

    mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"), jax.devices())
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*tokens/lookup"] = ("model", None)  # a full match of the variable path
    with keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch").scope():
        sharded = fine_tune()
    lookup = sharded.get_layer("tokens").lookup
    shards = sorted(tuple(s.data.shape) for s in lookup.value.addressable_shards)
    model_parallel = max(
        float(np.max(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b))))
        for a, b in zip(single.weights, sharded.weights)
    )
    print("RESULT", json.dumps({
        "data_parallel": data_parallel, "model_parallel": model_parallel, "shards": shards,
    }))
    """
)


@pytest.fixture(scope="module")
def result():
    if keras.backend.backend() != "jax":
        pytest.skip("keras.distribution is tested on the JAX backend")
    env = dict(
        os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, done.stdout + done.stderr
    return json.loads(lines[-1][len("RESULT "):])


def test_data_parallel_fine_tune_equals_single_device(result):
    assert result["data_parallel"] < 1e-5


def test_model_parallel_shards_the_lookup_rows(result):
    assert result["shards"] == [[32, 4], [32, 4]]
    assert result["model_parallel"] < 1e-5
