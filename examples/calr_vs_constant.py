"""Compare CALR with a constant learning rate for the fine-tune after factorization.

Trains a DAN on the bundled TREC data, factorizes its embedding, then
fine-tunes two copies of the same compressed model for the same number of
steps: one with a constant Adam learning rate, one with the cyclically
annealed learning rate (CALR) of Acharya et al. (2019). Prints the dev and
test accuracy of each over a few seeds and writes both schedules to a plot.

Which one wins depends on the task and the budget; this script measures it
rather than assuming it. Run it as is, or add `--quick` for a smoke run.
"""

import argparse

import keras
import numpy as np

import keras_lowrank
from keras_lowrank.data import build_vocabulary, load_dataset
from keras_lowrank.models import dan_classifier


def fine_tune(model, learning_rate, x, y, epochs, seed):
    keras.utils.set_random_seed(seed)
    small = keras_lowrank.factorize_embeddings(model, compression=0.9)
    small.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    small.fit(x, y, epochs=epochs, batch_size=50, verbose=0)
    return small


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A small subset, one seed, one epoch (smoke test).")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--plot", default=None, help="Write both schedules to this PNG file.")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    epochs = 1 if args.quick else 4

    data = load_dataset("trec")
    texts, y_train = data.texts("train"), data.labels("train")
    if args.quick:
        texts, y_train = texts[:400], y_train[:400]
    vocabulary = build_vocabulary(texts)
    x_train = vocabulary.encode(texts, sequence_length=20)
    splits = {s: (vocabulary.encode(data.texts(s), sequence_length=20), data.labels(s)) for s in ("dev", "test")}

    keras.utils.set_random_seed(0)
    model = dan_classifier(vocabulary.size, data.num_classes, embedding_dim=32 if args.quick else 300,
                           sequence_length=20, hidden_units=(64,) if args.quick else (300, 300))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=50, verbose=2)

    steps = int(np.ceil(len(x_train) / 50)) * epochs
    schedules = {
        "constant": 1e-3,
        "CALR": keras_lowrank.CyclicallyAnnealedLearningRate(1e-4, 3e-3, step_size=max(1, steps // 8), decay=0.5),
    }
    results = {}
    for name, learning_rate in schedules.items():
        scores = {split: [] for split in splits}
        for seed in range(seeds):
            small = fine_tune(model, learning_rate, x_train, y_train, epochs, seed)
            for split, (x, y) in splits.items():
                scores[split].append(small.evaluate(x, y, verbose=0)[1])
        results[name] = {split: float(np.mean(v)) for split, v in scores.items()}
        print(f"{name:>9}: dev {results[name]['dev']:.4f}  test {results[name]['test']:.4f}  ({seeds} seed(s))")
    if args.plot:
        keras_lowrank.plot_schedules(schedules, steps, args.plot)
        print(f"wrote {args.plot}")
    return results


if __name__ == "__main__":
    main()
