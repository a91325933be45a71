"""`TextClassificationData`: the one container every dataset loader returns.

It holds the train/dev/test splits of a single-label text-classification task
as `tf.data.Dataset`s of `(text, label)` pairs, plus the label names, and gives
plain Python/numpy views of each split for vocabulary building and encoding.
It must not read files or know where the data came from (that is the loaders'
job: `datasets.py`, `text_files.py`).
"""

import dataclasses

import numpy as np

from keras_lowrank import _compat

# TensorFlow-only module (`tf.data` splits): `keras_lowrank.data` imports it
# lazily, so a missing TensorFlow surfaces here as one clear ImportError.
tf = _compat.import_tensorflow("`keras_lowrank.data` datasets (`tf.data` splits)")

SPLITS = ("train", "dev", "test")


@dataclasses.dataclass
class TextClassificationData:
    """Train/dev/test splits of a text-classification task.

    Each split is a `tf.data.Dataset` yielding `(text, label)` pairs: `text` a
    scalar `tf.string` (UTF-8), `label` a scalar `tf.int64` in
    `[0, num_classes)`. `texts(split)` and `labels(split)` return the same
    split as a list of Python strings and an int64 numpy array (read once,
    then cached).

    Example:

    ```python
    data = keras_lowrank.load_dataset("trec")
    vocabulary = keras_lowrank.build_vocabulary(data.texts("train"))
    x_train = vocabulary.encode(data.texts("train"), sequence_length=40)
    y_train = data.labels("train")
    ```

    Attributes:
        name: dataset name (bundled name, folder name or tfds name).
        label_names: tuple of class names; label `i` is `label_names[i]`.
        train: `tf.data.Dataset` of `(text, label)`.
        dev: `tf.data.Dataset` of `(text, label)` (used for model selection).
        test: `tf.data.Dataset` of `(text, label)`.
        source: where the data came from, for reports (a path or tfds name).
    """

    name: str
    label_names: tuple
    train: tf.data.Dataset
    dev: tf.data.Dataset
    test: tf.data.Dataset
    source: str = ""
    _arrays: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_arrays(cls, name, label_names, splits, *, source=""):
        """Builds the container from in-memory texts and integer labels.

        Args:
            name: dataset name.
            label_names: sequence of class names.
            splits: dict mapping "train", "dev" and "test" to
                `(texts, labels)` with `texts` a list of strings and `labels`
                integers in `[0, len(label_names))`.
            source: free-form origin string.

        Returns:
            A `TextClassificationData`.
        """
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            raise ValueError(
                f"Expected `splits` to hold {list(SPLITS)}, missing: {missing}"
            )
        datasets, arrays = {}, {}
        for split in SPLITS:
            texts, labels = splits[split]
            texts = [str(t) for t in texts]
            labels = np.asarray(labels, dtype=np.int64).reshape(-1)
            if len(texts) != len(labels):
                raise ValueError(
                    f"Split {split!r} has {len(texts)} texts but {len(labels)} labels."
                )
            arrays[split] = (texts, labels)
            datasets[split] = tf.data.Dataset.from_tensor_slices(
                (tf.constant(texts, dtype=tf.string, shape=(len(texts),)), labels)
            )
        return cls(
            name=name,
            label_names=tuple(str(n) for n in label_names),
            source=source,
            _arrays=arrays,
            **datasets,
        )

    @property
    def num_classes(self):
        """Number of classes."""
        return len(self.label_names)

    def split(self, split):
        """Returns the `tf.data.Dataset` of a split ("train", "dev" or "test")."""
        return getattr(self, self._check_split(split))

    def texts(self, split):
        """Returns the texts of a split as a list of `str`."""
        return self._materialize(split)[0]

    def labels(self, split):
        """Returns the labels of a split as an int64 numpy array."""
        return self._materialize(split)[1]

    def num_examples(self, split):
        """Returns the number of examples in a split."""
        return len(self._materialize(split)[1])

    def summary(self):
        """Returns a dict of split sizes and per-class counts, for reports."""
        return {
            "name": self.name,
            "source": self.source,
            "label_names": list(self.label_names),
            "splits": {
                s: {
                    "examples": self.num_examples(s),
                    "per_class": np.bincount(
                        self.labels(s), minlength=self.num_classes
                    ).tolist(),
                }
                for s in SPLITS
            },
        }

    def _check_split(self, split):
        if split not in SPLITS:
            raise ValueError(
                f"Expected `split` to be one of {list(SPLITS)}, received: split={split!r}"
            )
        return split

    def _materialize(self, split):
        split = self._check_split(split)
        if split not in self._arrays:
            texts, labels = [], [np.zeros(0, np.int64)]
            # Batched reading: element-wise iteration is ~10x slower.
            for text, label in getattr(self, split).batch(8192).as_numpy_iterator():
                texts.extend(t.decode("utf-8") for t in text)
                labels.append(np.asarray(label, dtype=np.int64))
            self._arrays[split] = (texts, np.concatenate(labels))
        return self._arrays[split]
