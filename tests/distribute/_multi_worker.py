"""One worker of a 2-worker `MultiWorkerMirroredStrategy` cluster on localhost.

Started by `test_multi_worker_mirrored_strategy.py` with `TF_CONFIG` naming
both workers on 127.0.0.1. Every worker builds the same model inside the
strategy scope, converts it with `factorize_embeddings` inside the scope,
fine-tunes it with SGD and the cyclically annealed schedule on the same
global batches (each worker trains on its shard of every batch) in a custom
training loop, then runs
the same fine-tune on one device without a strategy as the reference, and
writes both results to the `.npz` file given as its only argument.

Usage: TF_CONFIG=... python _multi_worker.py OUTPUT.npz
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# The strategy must exist before any other TensorFlow op runs in this process.
strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402

from _scenario import EPOCHS, GLOBAL_BATCH, RANK, STEPS  # noqa: E402
from _scenario import compile_for_fine_tune, data, fine_tune_optimizer, functional_model  # noqa: E402
from _scenario import initial_weights, weights  # noqa: E402

from keras_lowrank.layers import LowRankEmbedding  # noqa: E402
from keras_lowrank.surgery import factorize_embeddings  # noqa: E402


def main(output_path):
    ids, labels = data()
    dataset = tf.data.Dataset.from_tensor_slices((ids, labels)).batch(GLOBAL_BATCH)
    # Shard every global batch between the workers (not whole files), so the
    # cluster sees exactly the batches of the single-device run.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)

    with strategy.scope():
        model = functional_model()
        model.set_weights(initial_weights())
        converted = factorize_embeddings(model, rank=RANK)
        # The optimizer is created in the scope too: its slots and step
        # counter must be distributed like the variables they follow.
        optimizer = fine_tune_optimizer()
        per_example_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=None
        )
    distributed_weights = [
        isinstance(v.value, tf.distribute.DistributedValues) for v in converted.weights
    ]
    replaced = isinstance(converted.get_layer("embedding"), LowRankEmbedding)

    # A custom loop, not `model.fit`: Keras 3's `fit` cannot start under
    # MultiWorkerMirroredStrategy (its eager `strategy.reduce` of the first
    # batch fails; keras-team/keras#20585).
    @tf.function
    def train_step(ids, labels):
        def replica_step(ids, labels):
            with tf.GradientTape() as tape:
                logits = converted(ids, training=True)
                # Mean over the global batch, as `fit` on one device computes.
                loss = tf.nn.compute_average_loss(
                    per_example_loss(labels, logits), global_batch_size=GLOBAL_BATCH
                )
            variables = converted.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

        strategy.run(replica_step, args=(ids, labels))

    distributed_dataset = strategy.experimental_distribute_dataset(dataset)
    for _ in range(EPOCHS):
        for ids_batch, labels_batch in distributed_dataset:
            train_step(ids_batch, labels_batch)
    iterations = int(optimizer.iterations.numpy())
    distributed_end = weights(converted)

    # Reference: the same conversion and fine-tune on one device.
    single = factorize_embeddings(_single_device_model(), rank=RANK)
    compile_for_fine_tune(single)
    start = weights(single)
    single.fit(ids, labels, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    single_end = weights(single)

    arrays = {}
    for prefix, values in (("start", start), ("distributed", distributed_end), ("single", single_end)):
        arrays.update({f"{prefix}_{i}": w for i, w in enumerate(values)})
    summary = {
        "num_replicas_in_sync": strategy.num_replicas_in_sync,
        "all_weights_distributed": all(distributed_weights),
        "embedding_replaced": replaced,
        "iterations": iterations,
        "expected_iterations": STEPS,
        "num_weights": len(start),
    }
    np.savez(output_path, summary=json.dumps(summary), **arrays)
    return 0


def _single_device_model():
    model = functional_model()
    model.set_weights(initial_weights())
    return model


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
