"""Bundled datasets as tensorflow-datasets builders, and `load_dataset`.

SNIPS, TREC-6, SST-2 and MR ship inside the package (`bundled/<name>/`, each
with its SOURCE.md). Each has a `tfds.core.GeneratorBasedBuilder` that reads
those local files and prepares the usual tfds record files in a cache folder,
so the loaders return `tf.data.Dataset`s without any network access (the
builders are unregistered, never download, and are prepared with GCS lookups
off). `load_dataset` also accepts a folder of CSV/TSV files and, when the
machine is online, any tfds name with text and label features.

This module must not reach the network for bundled data nor read
`../shared`; tokenization belongs to `vocabulary.py`.
"""

import dataclasses
import importlib.resources
import os
import socket

import numpy as np

from keras_lowrank import _compat

# TensorFlow-only module (tfds builders): `keras_lowrank.data` imports it
# lazily, so a missing package surfaces here as one clear ImportError.
tfds = _compat.import_tensorflow_datasets("`keras_lowrank.data` dataset builders")

from keras_lowrank.data.splits import stratified_split
from keras_lowrank.data.text_classification_data import TextClassificationData
from keras_lowrank.data.text_files import load_text_folder

#: Seed of every split carved from the bundled data (TREC dev, MR dev/test).
SPLIT_SEED = 0
DEFAULT_DEV_FRACTION = 0.1
_DATA_DIR_ENV = "KERAS_LOWRANK_DATA_DIR"


def default_data_dir():
    """Returns the cache folder for prepared datasets.

    `$KERAS_LOWRANK_DATA_DIR` when set, else `~/.cache/keras_lowrank/tfds`.
    """
    return os.environ.get(_DATA_DIR_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "keras_lowrank", "tfds"
    )


def _bundled_path(*parts):
    path = importlib.resources.files("keras_lowrank.data").joinpath("bundled")
    for part in parts:
        path = path.joinpath(part)
    return path


def _read_lines(parts, encoding):
    data = _bundled_path(*parts).read_bytes().decode(encoding)
    # Split on "\n" only: MR holds U+0085 inside lines, which
    # str.splitlines() would treat as a line break.
    return [line.rstrip("\r") for line in data.split("\n") if line.strip()]


def _read_labelled(parts, encoding):
    """Reads `<integer label> <text>` lines."""
    texts, labels = [], []
    for line in _read_lines(parts, encoding):
        label, _, text = line.partition(" ")
        texts.append(text.strip())
        labels.append(int(label))
    return texts, np.asarray(labels, dtype=np.int64)


def _subset(pair, indices):
    texts, labels = pair
    return [texts[i] for i in indices], labels[indices]


@dataclasses.dataclass
class BundledConfig(tfds.core.BuilderConfig):
    """Split settings of a bundled dataset.

    Attributes:
        dev_fraction: fraction of train held out as dev (datasets without an
            official dev split).
        test_fraction: fraction held out as test (datasets without an
            official test split: MR).
        seed: seed of the stratified split(s).
    """

    dev_fraction: float = DEFAULT_DEV_FRACTION
    test_fraction: float = 0.1
    seed: int = SPLIT_SEED


_DEFAULT_CONFIG = BundledConfig(
    name="default",
    description=f"Stratified splits carved with seed {SPLIT_SEED}, dev fraction "
    f"{DEFAULT_DEV_FRACTION} (where no official split exists).",
)


class BundledTextClassification(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base builder: reads one bundled dataset into train/dev/test splits.

    Subclasses set `name`, `LABEL_NAMES`, `FOLDER` and implement
    `_read_splits(config)` returning `{"train"|"dev"|"test": (texts, labels)}`.
    Builders are not registered with tfds (some names, e.g. `trec`, are taken
    by tfds' own downloading builders); use them through `load_dataset` or
    instantiate them directly.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Files bundled with keras_lowrank 0.1."}
    BUILDER_CONFIGS = [_DEFAULT_CONFIG]
    DEFAULT_CONFIG_NAME = "default"
    LABEL_NAMES = ()
    FOLDER = ""
    HOMEPAGE = ""
    CITATION = ""

    def _info(self):
        return self.dataset_info_from_configs(
            description=_bundled_path(self.FOLDER, "SOURCE.md").read_text("utf-8"),
            features=tfds.features.FeaturesDict(
                {
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=list(self.LABEL_NAMES)),
                }
            ),
            supervised_keys=("text", "label"),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Everything is local; nothing is downloaded.
        return {
            split: self._generate_examples(texts, labels)
            for split, (texts, labels) in self._read_splits(self.builder_config).items()
        }

    def _generate_examples(self, texts, labels):
        for i, (text, label) in enumerate(zip(texts, labels)):
            yield i, {"text": text, "label": int(label)}

    def _read_splits(self, config):
        raise NotImplementedError


class Snips(BundledTextClassification, skip_registration=True):
    """SNIPS voice-assistant intents (7 classes), Goo et al. (2018) split.

    Official train/dev/test: 13,084 / 700 / 700 utterances; nothing is carved.
    """

    name = "keras_lowrank_snips"
    FOLDER = "snips"
    LABEL_NAMES = (
        "AddToPlaylist",
        "BookRestaurant",
        "GetWeather",
        "PlayMusic",
        "RateBook",
        "SearchCreativeWork",
        "SearchScreeningEvent",
    )
    HOMEPAGE = "https://github.com/sonos/nlu-benchmark"
    CITATION = "Goo et al., Slot-Gated Modeling for Joint Slot Filling and Intent Prediction, NAACL 2018."

    def _read_splits(self, config):
        index = {name: i for i, name in enumerate(self.LABEL_NAMES)}
        splits = {}
        for split in ("train", "dev", "test"):
            texts = _read_lines((self.FOLDER, split, "seq.in"), "utf-8")
            names = _read_lines((self.FOLDER, split, "label"), "utf-8")
            if len(texts) != len(names):
                raise ValueError(f"SNIPS {split}: {len(texts)} texts but {len(names)} labels.")
            labels = np.asarray([index[n.strip()] for n in names], dtype=np.int64)
            splits[split] = ([t.strip() for t in texts], labels)
        return splits


class Trec(BundledTextClassification, skip_registration=True):
    """TREC-6 question classification (Li & Roth 2002).

    Official train 5,452 / test 500; dev = a seeded stratified
    `dev_fraction` of train (default 10 %, seed `SPLIT_SEED`: 546 dev, 4,906
    train).
    """

    name = "keras_lowrank_trec"
    FOLDER = "trec"
    LABEL_NAMES = ("DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM")
    HOMEPAGE = "https://cogcomp.seas.upenn.edu/Data/QA/QC/"
    CITATION = "Li and Roth, Learning Question Classifiers, COLING 2002."

    def _read_splits(self, config):
        train = _read_labelled((self.FOLDER, "TREC.train.all"), "latin-1")
        test = _read_labelled((self.FOLDER, "TREC.test.all"), "latin-1")
        keep, dev = stratified_split(train[1], [config.dev_fraction], seed=config.seed)
        return {"train": _subset(train, keep), "dev": _subset(train, dev), "test": test}


class Sst2(BundledTextClassification, skip_registration=True):
    """SST-2 sentence-level binary sentiment (Socher et al. 2013; Kim 2014 files).

    Official train/dev/test: 6,920 / 872 / 1,821 sentences.
    """

    name = "keras_lowrank_sst2"
    FOLDER = "sst2"
    LABEL_NAMES = ("negative", "positive")
    HOMEPAGE = "https://nlp.stanford.edu/sentiment/"
    CITATION = "Socher et al., Recursive Deep Models for Semantic Compositionality Over a Sentiment Treebank, EMNLP 2013."

    def _read_splits(self, config):
        return {
            split: _read_labelled((self.FOLDER, f"stsa.binary.{split}"), "utf-8")
            for split in ("train", "dev", "test")
        }


class Mr(BundledTextClassification, skip_registration=True):
    """MR movie-review sentence polarity (Pang & Lee 2005), 10,662 sentences.

    No official split: seeded stratified test (`test_fraction`, default 10 %)
    and dev (`dev_fraction` of the whole set, default 10 %) are carved with
    seed `SPLIT_SEED`: 8,530 / 1,066 / 1,066. The file is Latin-1.
    """

    name = "keras_lowrank_mr"
    FOLDER = "mr"
    LABEL_NAMES = ("negative", "positive")
    HOMEPAGE = "https://www.cs.cornell.edu/people/pabo/movie-review-data/"
    CITATION = "Pang and Lee, Seeing stars: Exploiting class relationships for sentiment categorization, ACL 2005."

    def _read_splits(self, config):
        every = _read_labelled((self.FOLDER, "rt-polarity.all"), "latin-1")
        train, dev, test = stratified_split(
            every[1], [config.dev_fraction, config.test_fraction], seed=config.seed
        )
        return {
            "train": _subset(every, train),
            "dev": _subset(every, dev),
            "test": _subset(every, test),
        }


BUNDLED_BUILDERS = {"snips": Snips, "trec": Trec, "sst2": Sst2, "mr": Mr}
# Datasets whose dev split is carved (so `dev_fraction` / `seed` matter).
_CARVED_DEV = ("trec", "mr")


def list_datasets():
    """Returns the names of the bundled datasets (usable offline)."""
    return sorted(BUNDLED_BUILDERS)


def bundled_builder(name, *, data_dir=None, dev_fraction=DEFAULT_DEV_FRACTION, seed=SPLIT_SEED):
    """Returns the tfds builder of a bundled dataset, prepared and ready.

    Args:
        name: one of `list_datasets()`.
        data_dir: cache folder (default: `default_data_dir()`).
        dev_fraction: dev fraction for TREC and MR (ignored by SNIPS and
            SST-2, which have official dev splits).
        seed: split seed for TREC and MR.

    Returns:
        A prepared `tfds.core.DatasetBuilder`.
    """
    if name not in BUNDLED_BUILDERS:
        raise ValueError(
            f"Expected `name` to be one of {list_datasets()}, received: name={name!r}"
        )
    if not 0.0 < float(dev_fraction) < 1.0:
        raise ValueError(
            f"Expected `dev_fraction` to be in (0, 1), received: dev_fraction={dev_fraction}"
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"Expected `seed` to be an integer, received: seed={seed!r}")
    config = "default"
    if name in _CARVED_DEV and (float(dev_fraction), int(seed)) != (DEFAULT_DEV_FRACTION, SPLIT_SEED):
        config = BundledConfig(
            name=f"seed{int(seed)}-dev{float(dev_fraction):g}",
            dev_fraction=float(dev_fraction),
            seed=int(seed),
        )
    builder = BUNDLED_BUILDERS[name](
        data_dir=os.fspath(data_dir or default_data_dir()), config=config
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return builder


def _from_builder(name, builder, splits, source):
    label_names = builder.info.features["label"].names
    datasets = {
        ours: builder.as_dataset(split=theirs, as_supervised=True, shuffle_files=False)
        for ours, theirs in splits.items()
    }
    return TextClassificationData(
        name=name, label_names=tuple(label_names), source=source, **datasets
    )


def _network_available(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pick(names, preferred, kind, dataset):
    for name in preferred:
        if name in names:
            return name
    if len(names) == 1:
        return names[0]
    raise ValueError(
        f"tfds dataset {dataset!r}: cannot tell which {kind} feature to use; "
        f"candidates: {names}."
    )


def _load_tfds(name, *, data_dir, dev_fraction, seed):
    known = tfds.list_builders(with_community_datasets=False)
    if name.split("/")[0].split(":")[0] not in known:
        raise ValueError(
            f"{name!r} is not a bundled dataset ({list_datasets()}), not a folder, "
            "and not a tensorflow-datasets name."
        )
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.data_path.joinpath("dataset_info.json").exists():
        if not _network_available():
            raise RuntimeError(
                f"tfds dataset {name!r} is not prepared in {builder.data_dir} and the "
                "network is unreachable, so it cannot be downloaded. Offline, use a "
                f"bundled dataset ({list_datasets()}) or a folder of CSV/TSV files."
            )
        builder.download_and_prepare()
    features = builder.info.features
    text_key = _pick(
        [k for k, f in features.items() if isinstance(f, tfds.features.Text)],
        ("text", "sentence", "content", "document", "review"),
        "text",
        name,
    )
    label_key = _pick(
        [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)],
        ("label", "labels", "class"),
        "label",
        name,
    )
    label_names = features[label_key].names

    def read(split):
        texts, labels = [], []
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            texts.append(example[text_key].decode("utf-8"))
            labels.append(int(example[label_key]))
        return texts, np.asarray(labels, dtype=np.int64)

    available = set(builder.info.splits)
    splits = {"train": read("train")}
    dev_name = next((s for s in ("validation", "dev") if s in available), None)
    test = read("test") if "test" in available else None
    if test is None or (test[1] < 0).all():
        # No labelled test split (e.g. GLUE): the official dev split becomes
        # test and a dev split is carved from train.
        if dev_name is None:
            raise ValueError(f"tfds dataset {name!r} has no labelled test or validation split.")
        test, dev_name = read(dev_name), None
    splits["test"] = test
    if dev_name is not None:
        splits["dev"] = read(dev_name)
    else:
        keep, dev = stratified_split(splits["train"][1], [dev_fraction], seed=seed)
        splits["dev"] = _subset(splits["train"], dev)
        splits["train"] = _subset(splits["train"], keep)
    return TextClassificationData.from_arrays(name, label_names, splits, source=f"tfds:{name}")


def load_dataset(name_or_path, *, data_dir=None, dev_fraction=DEFAULT_DEV_FRACTION, seed=SPLIT_SEED, **folder_kwargs):
    """Loads a text-classification dataset as a `TextClassificationData`.

    `name_or_path` is resolved in this order:
    1. a bundled name (`list_datasets()`: "mr", "snips", "sst2", "trec"):
       read from the package through its tfds builder, offline;
    2. an existing folder: `load_text_folder(path, dev_fraction=..., seed=...,
       **folder_kwargs)`;
    3. a tensorflow-datasets name with a text and a ClassLabel feature
       (downloaded on first use, so online only; a clear `RuntimeError` when
       offline). Its "validation" split is dev; without a labelled test split
       the validation split becomes test and dev is carved from train.

    Example:

    ```python
    data = keras_lowrank.load_dataset("sst2")
    data.num_classes, data.num_examples("train")  # (2, 6920)
    ```

    Args:
        name_or_path: bundled name, folder path or tfds name.
        data_dir: cache folder of prepared datasets (bundled default:
            `$KERAS_LOWRANK_DATA_DIR` or `~/.cache/keras_lowrank/tfds`; tfds
            names default to tfds' own folder).
        dev_fraction: fraction of train held out as dev where no dev split
            exists (TREC, MR, folders and tfds datasets without one).
        seed: seed of those carved splits.
        **folder_kwargs: `text_column`, `label_column`, `encoding` for folders.

    Returns:
        A `TextClassificationData`.
    """
    name = os.fspath(name_or_path)
    if name in BUNDLED_BUILDERS:
        builder = bundled_builder(name, data_dir=data_dir, dev_fraction=dev_fraction, seed=seed)
        return _from_builder(
            name, builder, {s: s for s in ("train", "dev", "test")}, f"bundled:{name}"
        )
    if os.path.isdir(name):
        return load_text_folder(name, dev_fraction=dev_fraction, seed=seed, **folder_kwargs)
    if folder_kwargs:
        raise ValueError(
            f"{sorted(folder_kwargs)} only apply to folders; {name!r} is not a folder."
        )
    if os.sep in name or os.path.splitext(name)[1] in (".csv", ".tsv"):
        raise FileNotFoundError(f"No such folder: {name!r}")
    return _load_tfds(name, data_dir=data_dir, dev_fraction=dev_fraction, seed=seed)
