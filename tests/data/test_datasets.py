"""Bundled datasets through their tfds builders, offline, and `load_dataset`."""

import numpy as np
import pytest
import tensorflow as tf

from keras_lowrank.data import datasets
from keras_lowrank.data.datasets import load_dataset

# Counts from each bundled SOURCE.md.
EXPECTED = {
    "snips": ((13084, 700, 700), 7),
    "trec": ((4906, 546, 500), 6),
    "sst2": ((6920, 872, 1821), 2),
    "mr": ((8530, 1066, 1066), 2),
}


def test_list_datasets():
    assert datasets.list_datasets() == ["mr", "snips", "sst2", "trec"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_split_sizes_and_labels(bundled, name):
    data = bundled[1][name]
    sizes, num_classes = EXPECTED[name]
    assert tuple(data.num_examples(s) for s in ("train", "dev", "test")) == sizes
    assert data.num_classes == num_classes
    for split in ("train", "dev", "test"):
        labels = data.labels(split)
        assert labels.min() >= 0 and labels.max() < num_classes
        assert all(isinstance(t, str) and t for t in data.texts(split))


def test_label_names(bundled):
    loaded = bundled[1]
    assert loaded["trec"].label_names == ("DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM")
    assert loaded["sst2"].label_names == ("negative", "positive")
    assert loaded["snips"].label_names[0] == "AddToPlaylist"
    assert "UNK" not in loaded["snips"].label_names


def test_per_class_counts_match_source(bundled):
    loaded = bundled[1]
    trec = loaded["trec"]
    train_and_dev = np.bincount(
        np.concatenate([trec.labels("train"), trec.labels("dev")]), minlength=6
    )
    np.testing.assert_array_equal(train_and_dev, [1162, 1250, 86, 1223, 835, 896])
    np.testing.assert_array_equal(np.bincount(trec.labels("test")), [138, 94, 9, 65, 81, 113])
    # Stratified 10 %: per class round-half-up of 10 %.
    np.testing.assert_array_equal(np.bincount(trec.labels("dev")), [116, 125, 9, 122, 84, 90])
    sst2 = loaded["sst2"]
    np.testing.assert_array_equal(np.bincount(sst2.labels("train")), [3310, 3610])
    np.testing.assert_array_equal(np.bincount(sst2.labels("test")), [912, 909])
    np.testing.assert_array_equal(np.bincount(loaded["snips"].labels("dev")), [100] * 7)


def test_mr_latin1_all_examples(bundled):
    mr = bundled[1]["mr"]
    texts = mr.texts("train") + mr.texts("dev") + mr.texts("test")
    assert len(texts) == 10662
    for split in ("train", "dev", "test"):
        counts = np.bincount(mr.labels(split))
        assert counts[0] == counts[1]
    # Byte 0x85 stays inside its line (decoded as U+0085), it does not split it.
    assert any("\x85" in t for t in texts)
    assert len(set(mr.texts("train")) & set(mr.texts("test"))) < 10  # a few duplicate sentences exist


def test_datasets_are_tf_data(bundled):
    data = bundled[1]["trec"]
    text, label = next(iter(data.dev))
    assert text.dtype == tf.string and label.dtype == tf.int64


def test_reload_is_deterministic_and_offline(bundled, no_network):
    data_dir, loaded = bundled
    again = load_dataset("trec", data_dir=data_dir)
    assert again.texts("dev") == loaded["trec"].texts("dev")
    np.testing.assert_array_equal(again.labels("dev"), loaded["trec"].labels("dev"))


def test_seed_changes_carved_dev(bundled, no_network):
    data_dir, loaded = bundled
    other = load_dataset("trec", data_dir=data_dir, seed=1)
    assert other.num_examples("dev") == 546
    assert set(other.texts("dev")) != set(loaded["trec"].texts("dev"))
    assert other.texts("test") == loaded["trec"].texts("test")


def test_env_var_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_LOWRANK_DATA_DIR", str(tmp_path))
    assert datasets.default_data_dir() == str(tmp_path)
    monkeypatch.delenv("KERAS_LOWRANK_DATA_DIR")
    assert datasets.default_data_dir().endswith("keras_lowrank/tfds")


def test_folder_is_dispatched(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na b,x\nc d,y\ne f,x\ng h,y\n")
    (tmp_path / "dev.csv").write_text("text,label\ni j,x\n")
    (tmp_path / "test.csv").write_text("text,label\nk l,y\n")
    data = load_dataset(str(tmp_path))
    assert data.label_names == ("x", "y") and data.num_examples("train") == 4


def test_missing_folder_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such folder"):
        load_dataset(str(tmp_path / "nope"))


def test_unknown_name_errors(no_network):
    with pytest.raises(ValueError, match="not a bundled dataset"):
        load_dataset("no_such_dataset_xyz")


def test_tfds_name_offline_errors_clearly(tmp_path, no_network):
    with pytest.raises(RuntimeError, match="network is unreachable"):
        load_dataset("imdb_reviews", data_dir=tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="dev_fraction"):
        datasets.bundled_builder("trec", dev_fraction=1.5)
    with pytest.raises(ValueError, match="name"):
        datasets.bundled_builder("imdb")
