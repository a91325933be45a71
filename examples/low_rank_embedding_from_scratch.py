"""Use `LowRankEmbedding` in a new model, trained from scratch.

When the vocabulary is large and no trained table exists yet, the table can
be low rank from the start: `LowRankEmbedding(V, d, rank)` stores
`A[V, r]` and `B[r, d]` and looks up `A[ids] @ B`, with the call contract of
`keras.layers.Embedding` (masking included). This example trains one on the
bundled TREC question-type data and saves and reloads it.

Run `python examples/low_rank_embedding_from_scratch.py` or add `--quick`.
"""

import argparse
import os
import tempfile

import keras
import numpy as np

import keras_lowrank
from keras_lowrank.data import build_vocabulary, load_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A small subset and one epoch (smoke test).")
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    data = load_dataset("trec")
    texts, labels = data.texts("train"), data.labels("train")
    if args.quick:
        texts, labels = texts[:512], labels[:512]
    vocabulary = build_vocabulary(texts)
    x_train = vocabulary.encode(texts, sequence_length=20)
    x_test = vocabulary.encode(data.texts("test"), sequence_length=20)

    dim = 32 if args.quick else 300
    model = keras.Sequential(
        [
            keras.Input((20,), dtype="int32"),
            keras_lowrank.LowRankEmbedding(vocabulary.size, dim, rank=args.rank, mask_zero=True),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(data.num_classes),
        ]
    )
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    model.summary()
    model.fit(x_train, labels, epochs=1 if args.quick else 10, batch_size=32, verbose=2)
    _, accuracy = model.evaluate(x_test, data.labels("test"), verbose=0)
    layer = model.layers[0]
    print(f"test accuracy {accuracy:.4f} with {layer.rank * (layer.input_dim + layer.output_dim):,} "
          f"embedding parameters instead of {layer.input_dim * layer.output_dim:,}")

    # The layer is registered with Keras: the model saves and loads as is.
    path = os.path.join(tempfile.mkdtemp(), "from_scratch.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x_test[:8], verbose=0), model.predict(x_test[:8], verbose=0), atol=1e-6)
    return accuracy


if __name__ == "__main__":
    main()
