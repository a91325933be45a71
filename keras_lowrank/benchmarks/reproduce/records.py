"""The reproduction's records: the results.json file, its fields and their keys.

Read by the runner (to skip finished runs) and by the report (to render
them); neither imports the other. This module must not train or render.
"""

import json
import os

from keras_lowrank.utils.atomic_write import write_json

RESULTS_FILE = "results.json"
# The fields every record has (the results.json contract).
RECORD_FIELDS = (
    "dataset",
    "model",
    "vectors",
    "method",
    "compression",
    "size",
    "seed",
    "status",
    "rank",
    "vocab_rows",
    "vocab_size",
    "embedding_dim",
    "embedding_params",
    "embedding_bytes",
    "float32_embedding_bytes",
    "embedding_fraction",
    "budget_bytes",
    "other_bytes",
    "dev_accuracy",
    "test_accuracy",
    "schedule",
    "epochs",
    "seconds",
)


def dataset_name(dataset):
    """How records name a dataset: a folder by its own name, anything else as given.

    A folder's full path would leak into tables and plot file names and
    change with where the data sits; the path is kept in `dataset_path`.
    """
    if os.path.isdir(dataset):
        return os.path.basename(os.path.normpath(dataset))
    return dataset


def load_records(path):
    """Reads results.json (a list of records); [] when absent."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    if not isinstance(records, list):
        raise ValueError(f"Expected a list of records in {path}, found {type(records).__name__}")
    return records


def save_records(path, records):
    """Writes results.json atomically (write a temp file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json(path, records, indent=1, sort_keys=False)


def record_key(record):
    """The configuration a record answers: used to skip finished runs."""
    return (
        record["dataset"],
        record["model"],
        record["vectors"],
        record["method"],
        round(float(record["size"]), 6) if record.get("target") else "fixed",
        int(record["seed"]),
        record.get("schedule_key") or "-",
        int(record.get("base_epochs", 0)),
        int(record.get("finetune_epochs", 0)),
        record.get("max_train"),
    )


