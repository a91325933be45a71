"""Fine-tune and compress an intent classifier on the bundled SNIPS data, then export it.

The whole online-compression recipe of Acharya et al. (2019) on real data:

1. train a DAN intent classifier (embedding learned from scratch);
2. replace its embedding table by the factors of the table's truncated SVD
   (`factorize_embeddings`, 90% fewer embedding parameters);
3. fine-tune the whole network with the cyclically annealed learning rate;
4. export the result to a verified TFLite file.

Run `python examples/intent_classifier_snips.py` (a few minutes on a laptop
CPU) or add `--quick` for a seconds-long run on a small subset.
"""

import argparse
import os

import keras
import numpy as np

import keras_lowrank
from keras_lowrank.data import build_vocabulary, load_dataset
from keras_lowrank.export import export_tflite
from keras_lowrank.models import dan_classifier

SEQUENCE_LENGTH = 24


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A small subset and one epoch (smoke test).")
    parser.add_argument("--output", default="snips_output", help="Folder for the .keras and .tflite files.")
    parser.add_argument("--compression", type=float, default=0.9, help="Share of embedding parameters removed.")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    os.makedirs(args.output, exist_ok=True)

    data = load_dataset("snips")
    train_texts, y_train = data.texts("train"), data.labels("train")
    if args.quick:
        train_texts, y_train = train_texts[:512], y_train[:512]
    vocabulary = build_vocabulary(train_texts)
    x_train = vocabulary.encode(train_texts, sequence_length=SEQUENCE_LENGTH)
    x_test = vocabulary.encode(data.texts("test"), sequence_length=SEQUENCE_LENGTH)
    y_test = data.labels("test")
    epochs = 1 if args.quick else 5
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    # 1. Train the uncompressed classifier.
    model = dan_classifier(
        vocabulary.size, data.num_classes, embedding_dim=32 if args.quick else 300,
        sequence_length=SEQUENCE_LENGTH, hidden_units=(64,) if args.quick else (300, 300),
    )
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=2)
    _, full_accuracy = model.evaluate(x_test, y_test, verbose=0)

    # 2. Factorize the trained table.
    small, report = keras_lowrank.factorize_embeddings(
        model, compression=args.compression, return_report=True
    )
    print(report)

    # 3. Fine-tune everything with CALR: two cycles per epoch, peaks halving.
    steps_per_epoch = int(np.ceil(len(x_train) / 64))
    schedule = keras_lowrank.CyclicallyAnnealedLearningRate(
        1e-4, 2e-3, step_size=max(1, steps_per_epoch // 4), decay=0.5
    )
    small.compile(keras.optimizers.Adam(schedule), loss, metrics=["accuracy"])
    small.fit(x_train, y_train, epochs=1 if args.quick else 2, batch_size=64, verbose=2)
    _, small_accuracy = small.evaluate(x_test, y_test, verbose=0)
    small.save(os.path.join(args.output, "snips_small.keras"))

    # 4. Export to TFLite (projection folded into the first Dense layer).
    export = export_tflite(small, os.path.join(args.output, "snips_small.tflite"))
    print(export)
    print(f"test accuracy: uncompressed {full_accuracy:.4f}, compressed {small_accuracy:.4f} "
          f"({report.compression:.0%} fewer embedding parameters)")
    return {"full_accuracy": full_accuracy, "small_accuracy": small_accuracy, "tflite_bytes": export.bytes}


if __name__ == "__main__":
    main()
