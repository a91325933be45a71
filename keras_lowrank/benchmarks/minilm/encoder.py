"""all-MiniLM-L6-v2 as a sentence encoder, compressed: how close does it stay?

Semantic search uses MiniLM's mean-pooled, L2-normalized token states. This
part factorizes the token table at shares of its float32 bytes, then distills
the compressed encoder's sentence embeddings towards the original's on
unlabeled training texts of the bundled datasets (mean squared error between
the normalized embeddings, i.e. `2 - 2 cos`), and measures on held-out test
sentences of the same datasets:

- mean cosine between each sentence's compressed and original embedding;
- nearest-neighbour agreement: the share of sentences whose nearest other
  sentence (by cosine) is the same under both encoders, and the overlap of
  their 10 nearest neighbours;

before and after the distillation, for float32 factors (the paper's step) and
for int4 factors at the largest rank within the same bytes, next to Keras'
int8 and int4 quantization of the table (no training), and `compress()`
itself given the texts without labels (the embedding objective: its search
over every table kind, chosen on held-out training texts). Rows land in `results.json` as they are measured; a rerun measures
only the missing ones.
"""

import os
import time

import numpy as np

from keras_lowrank.benchmarks.minilm import pretrained
from keras_lowrank.benchmarks.minilm import report

METHODS = ("keras_int8", "keras_int4", "low_rank", "low_rank_int4", "compress", "compress_mse")
# compress()'s rows and the loss each fine-tunes with: its own (cosine distance
# to the original's vectors), or Keras' mean squared error to them.
COMPRESS_LOSSES = {"compress": None, "compress_mse": "mean_squared_error"}

DEFAULTS = {
    "datasets": ("snips", "trec", "sst2"),
    "train_texts": 1500,
    "test_texts": 1000,
    "sizes": (0.10, 0.05),
    "epochs": 2,
    "batch_size": 32,
    "learning_rate": 1e-4,
    "sequence_length": 32,
    "neighbours": 10,
    # compress() itself, without labels (objective "embedding"): its search
    # over every table kind, chosen on the mean cosine of held-out training
    # texts (`validation_share` of them), measured on the test texts.
    "compress_sizes": (0.10, 0.05, 0.02),
    "compress_candidates": 6,
    "validation_share": 0.1,
    # Which rows to measure: the hand-made distillations cost two epochs
    # each, so a run on many texts may measure the baselines and compress() only.
    # `compress_mse` is asked for by name (it repeats the compress() rows).
    "methods": tuple(method for method in METHODS if method != "compress_mse"),
}


def run_part(output, *, source=None, seed=0, cache=None, **settings):
    """Measures encoder fidelity; writes `output/results.json` and returns it.

    Each `compress()` result is also saved as `encoder_<texts>_<size>.keras`
    under `cache` (default `pretrained.default_runs_dir()`) for the
    encoder-export part.
    """
    import keras

    from keras_lowrank.benchmarks import environment
    from keras_lowrank.benchmarks import output as output_lib
    from keras_lowrank.surgery import factorize_embeddings

    config = {**DEFAULTS, **settings}
    unknown = sorted(set(config["methods"]) - set(METHODS))
    if unknown:
        raise ValueError(f"Expected `methods` among {METHODS}, received: {unknown}")
    os.makedirs(output, exist_ok=True)
    machine = environment.describe_machine(("numpy", "tensorflow", "keras", "keras_hub"))
    path = os.path.join(output, "results.json")
    # A rerun keeps the rows it finds and measures only the missing ones.
    results = report.read_part(path) or {
        "benchmark": "minilm_encoder",
        "seed": seed,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "rows": [],
    }
    # Settings added since the part was first run are recorded with the rows they make.
    for key, value in config.items():
        results["config"].setdefault(key, list(value) if isinstance(value, tuple) else value)
    done = {(row["method"], row.get("size")) for row in results["rows"]}
    # Rows of methods not asked for count as done.
    done |= {(method, size) for method in METHODS if method not in config["methods"]
             for size in (None, *config["sizes"], *config["compress_sizes"])}
    folder = pretrained.model_folder(source)
    backbone, preprocessor = pretrained.load(folder, sequence_length=config["sequence_length"])
    (train, train_labels), (test, test_labels) = _texts(config, seed)
    results["texts"] = {"train": len(train), "test": len(test)}
    x_train = pretrained.tokenize(preprocessor, train)
    x_test = pretrained.tokenize(preprocessor, test)

    teacher = sentence_encoder(backbone)
    target_train = teacher.predict(x_train, batch_size=64, verbose=0)
    target_test = teacher.predict(x_test, batch_size=64, verbose=0)
    # The downstream task, on the embeddings themselves: k-NN over each
    # dataset's labelled training sentences, for its test sentences.
    knn = KnnTask(train_labels, test_labels, config["neighbours"])
    results["knn_accuracy_original"] = knn.accuracy(target_train, target_test)

    def measure(model):
        train_vectors = model.predict(x_train, batch_size=64, verbose=0)
        return {**_fidelity(model, x_test, target_test, config),
                "knn_accuracy": knn.accuracy(train_vectors, model.predict(x_test, batch_size=64, verbose=0))}

    def record(row):
        results["rows"].append(row)
        results["machine"] = output_lib.finish_machine(dict(machine))
        output_lib.write_progress(results, output)
        print(f"[encoder] {row['method']} {row.get('size') or ''} {row['stage']}: cosine "
              f"{row['mean_cosine']:.4f}, NN@1 {row['nn_agreement']:.3f}, "
              f"NN@{config['neighbours']} overlap {row['nn_overlap']:.3f}", flush=True)

    from keras_lowrank.compression import table_bytes

    if ("keras_int8", None) not in done:
        quantized_backbone = pretrained.load(folder)[0]
        quantized_backbone.token_embedding.quantize("int8")
        quantized = sentence_encoder(quantized_backbone)
        layer = quantized_backbone.token_embedding
        record({"method": "keras_int8", "size": None, "stage": "no training",
                "table_bytes": int(table_bytes(layer)), **measure(quantized)})

    for size in config["sizes"]:
        if ("low_rank", size) in done:
            continue
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        student = factorize_embeddings(teacher, compression=1.0 - size, layer_names="token_embedding")
        layer = _backbone(student).token_embedding
        common = {"method": "low_rank", "size": size, "rank": int(layer.rank),
                  "table_bytes": int(table_bytes(layer))}
        record({**common, "stage": "factorized", **measure(student)})
        student.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]), loss="mse")
        history = student.fit(x_train, target_train, batch_size=config["batch_size"],
                              epochs=config["epochs"], shuffle=True, verbose=0)
        record({**common, "stage": f"distilled ({config['epochs']} epoch(s))",
                "train_loss": [float(v) for v in history.history["loss"]],
                "seconds": time.perf_counter() - start,
                **measure(student)})

    if ("keras_int4", None) not in done:
        quantized_backbone = pretrained.load(folder)[0]
        quantized_backbone.token_embedding.quantize("int4")
        quantized = sentence_encoder(quantized_backbone)
        record({"method": "keras_int4", "size": None, "stage": "no training",
                "table_bytes": int(table_bytes(quantized_backbone.token_embedding)),
                **measure(quantized)})

    saved = os.path.join(cache or pretrained.default_runs_dir(), f"encoder_{len(train)}")
    _compress_rows(teacher, x_train, measure, config, seed, done, record, saved)

    # What compress() chooses for this table at these sizes: int4 factors at
    # the largest rank that fits, distilled in float, then quantized.
    from keras_lowrank.layers.kinds.low_rank import max_rank_for_bytes

    V, d = int(backbone.token_embedding.input_dim), int(backbone.token_embedding.output_dim)
    for size in config["sizes"]:
        if ("low_rank_int4", size) in done:
            continue
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        rank = max_rank_for_bytes(V, d, int(size * 4 * V * d), "int4")
        student = factorize_embeddings(teacher, rank=rank, layer_names="token_embedding")
        # The same (deterministic) factors again, quantized before any training.
        before = factorize_embeddings(teacher, rank=rank, layer_names="token_embedding")
        _backbone(before).token_embedding.quantize("int4")
        common = {"method": "low_rank_int4", "size": size, "rank": rank,
                  "table_bytes": int(table_bytes(_backbone(before).token_embedding))}
        record({**common, "stage": "factorized", **measure(before)})
        student.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]), loss="mse")
        history = student.fit(x_train, target_train, batch_size=config["batch_size"],
                              epochs=config["epochs"], shuffle=True, verbose=0)
        _backbone(student).token_embedding.quantize("int4")
        record({**common, "stage": f"distilled ({config['epochs']} epoch(s)), then int4",
                "train_loss": [float(v) for v in history.history["loss"]],
                "seconds": time.perf_counter() - start,
                **measure(student)})
    return results



def _compress_rows(teacher, x_train, measure, config, seed, done, record, saved):
    """`compress()` on the encoder without labels, at each size; fidelity on the test texts."""
    import keras

    from keras_lowrank import compress

    count = len(x_train["token_ids"])
    held = max(1, int(round(config["validation_share"] * count)))
    fit = {name: array[: count - held] for name, array in x_train.items()}
    validation = {name: array[count - held :] for name, array in x_train.items()}
    for method, size in [(m, s) for m in COMPRESS_LOSSES for s in config["compress_sizes"]]:
        if (method, size) in done:
            continue
        loss = COMPRESS_LOSSES[method]
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        small, compressed = compress(
            teacher, fit, validation, size=size, layer_names="token_embedding",
            candidates=config["compress_candidates"], epochs=config["epochs"],
            batch_size=config["batch_size"], seed=seed, verbose=1, return_report=True,
            **({} if loss is None else {"loss": loss}),
        )
        seconds = time.perf_counter() - start
        # The encoder-export part exports compress()'s own models.
        if loss is None:
            os.makedirs(os.path.dirname(saved) or ".", exist_ok=True)
            small.save(f"{saved}_{size:g}.keras")
        chosen = next((c for c in compressed.candidates if c.recipe == compressed.recipe), None)
        record({"method": method, "size": size, "loss": loss or "cosine",
                "stage": f"compress(): {chosen.description}" + (
                    " (not fine-tuned)" if not config["epochs"] else
                    f" (mean of its last {chosen.averaged} checkpoints)" if chosen.averaged else
                    " (its start: no fine-tune beat it)" if chosen.best_epoch == 0 else
                    f" (best after {chosen.best_epoch:.3g} epoch(s))"),
                "table_bytes": int(compressed.embedding_bytes), "seconds": seconds,
                "epochs": config["epochs"],
                "candidates": [{"description": c.description, "score": c.score, "best_epoch": c.best_epoch,
                                "bytes": c.embedding_bytes, "error": c.error} for c in compressed.candidates],
                "validation_mean_cosine": compressed.score, "recipes": len(compressed.candidates),
                "fit_texts": count - held, "validation_texts": held,
                **measure(small)})


def sentence_encoder(backbone):
    """A Keras model: the backbone's inputs -> mean-pooled, normalized states."""
    import keras

    inputs = {
        name: keras.Input(shape=(None,), dtype=dtype, name=name)
        for name, dtype in (("token_ids", "int32"), ("segment_ids", "int32"), ("padding_mask", "bool"))
    }
    states = backbone(inputs)["sequence_output"]
    mask = keras.ops.expand_dims(keras.ops.cast(inputs["padding_mask"], states.dtype), -1)
    pooled = keras.ops.sum(states * mask, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
    normalized = keras.layers.UnitNormalization(axis=-1)(pooled)
    return keras.Model(inputs, normalized, name="sentence_encoder")


def _backbone(encoder):
    """The backbone inside a `sentence_encoder` (names change when copied)."""
    return next(layer for layer in encoder.layers if hasattr(layer, "token_embedding"))


def _texts(config, seed):
    """`(train texts, labels), (test texts, labels)`, sampled from the datasets.

    A label is `(dataset, class)`: the k-NN task classifies within a dataset.
    """
    from keras_lowrank.data import load_dataset

    rng = np.random.default_rng(seed)
    train, test, train_labels, test_labels = [], [], [], []
    for name in config["datasets"]:
        data = load_dataset(name)
        train += data.texts("train")
        test += data.texts("test")
        train_labels += [(name, int(c)) for c in data.labels("train")]
        test_labels += [(name, int(c)) for c in data.labels("test")]
    picked = rng.permutation(len(train))[: config["train_texts"]]
    tested = np.random.default_rng(0).permutation(len(test))[: config["test_texts"]]
    return (([train[i] for i in picked], [train_labels[i] for i in picked]),
            ([test[i] for i in tested], [test_labels[i] for i in tested]))


class KnnTask:
    """k-nearest-neighbour classification on sentence vectors, within each dataset.

    Each test sentence takes the majority class of its `k` most similar
    (cosine) training sentences of the same dataset; the accuracy is the
    mean over datasets. Labels are never used to compress.
    """

    def __init__(self, train_labels, test_labels, k):
        self.k = k
        self.train = train_labels
        self.test = test_labels
        self.datasets = sorted({dataset for dataset, _ in test_labels})

    def accuracy(self, train_vectors, test_vectors):
        train_vectors = _unit(np.asarray(train_vectors, dtype=np.float64))
        test_vectors = _unit(np.asarray(test_vectors, dtype=np.float64))
        scores = []
        for dataset in self.datasets:
            rows = [i for i, (d, _) in enumerate(self.train) if d == dataset]
            queries = [i for i, (d, _) in enumerate(self.test) if d == dataset]
            classes = np.array([self.train[i][1] for i in rows])
            similarity = test_vectors[queries] @ train_vectors[rows].T
            nearest = np.argsort(-similarity, axis=1)[:, : self.k]
            predicted = [np.bincount(classes[row]).argmax() for row in nearest]
            scores.append(np.mean([p == self.test[i][1] for p, i in zip(predicted, queries)]))
        return float(np.mean(scores))


def _unit(vectors):
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _fidelity(model, x, target, config):
    got = np.asarray(model.predict(x, batch_size=64, verbose=0), dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    cosine = np.sum(got * target, axis=1)
    k = config["neighbours"]
    neighbours_got, neighbours_target = _neighbours(got, k), _neighbours(target, k)
    overlap = np.mean([
        len(set(a) & set(b)) / k for a, b in zip(neighbours_got, neighbours_target)
    ])
    return {
        "mean_cosine": float(np.mean(cosine)),
        "min_cosine": float(np.min(cosine)),
        "nn_agreement": float(np.mean(neighbours_got[:, 0] == neighbours_target[:, 0])),
        "nn_overlap": float(overlap),
    }


def _neighbours(vectors, k):
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1)[:, :k]
