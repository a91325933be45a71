"""Compress an existing `.keras` text model: factorize its embeddings and save it.

`python examples/compress_saved_model.py MODEL.keras OUT.keras --compression 0.9`
loads a trained model, prints the conversion report and saves the converted
model, ready to fine-tune. Without a model path it first saves a small demo
classifier so the script runs on its own. The `keras-lowrank compress`
command does the same from the shell.
"""

import argparse
import os
import tempfile

import keras
import numpy as np

import keras_lowrank


def demo_model(path, vocab_size=2000, dim=64):
    """Saves a small classifier whose table has a decaying spectrum, like a trained one."""
    model = keras.Sequential(
        [
            keras.Input((16,), dtype="int32"),
            keras.layers.Embedding(vocab_size, dim, mask_zero=True, name="embedding"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(4, name="logits"),
        ]
    )
    rng = np.random.default_rng(0)
    table = rng.normal(size=(vocab_size, dim)) * 0.8 ** np.arange(dim)
    model.get_layer("embedding").set_weights([table.astype("float32")])
    model.save(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="A saved .keras model (default: a demo model).")
    parser.add_argument("output", nargs="?", help="Where to save the compressed model.")
    parser.add_argument("--compression", type=float, default=0.9)
    parser.add_argument("--quick", action="store_true", help="Use a tiny demo model (smoke test).")
    args = parser.parse_args(argv)

    folder = tempfile.mkdtemp()
    path = args.model or demo_model(
        os.path.join(folder, "demo.keras"), *((200, 16) if args.quick else (2000, 64))
    )
    output = args.output or os.path.join(folder, "demo_small.keras")

    model = keras.saving.load_model(path)
    small, report = keras_lowrank.factorize_embeddings(
        model, compression=args.compression, return_report=True
    )
    print(report)
    small.save(output)
    print(f"saved {output}: {os.path.getsize(path):,} -> {os.path.getsize(output):,} bytes on disk")
    return output


if __name__ == "__main__":
    main()
