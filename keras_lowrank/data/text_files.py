"""Users' own data: a folder of CSV/TSV files -> `TextClassificationData`.

The folder holds `train.csv` or `train.tsv`, an optional `dev` file and a
`test` file, each with a header row naming a text and a label column. This
module only reads and validates such folders (and decodes bytes with the
documented fallback); it must not tokenize, download or know about the bundled
datasets.

Policy for bad input (each case is tested):
- a required file is missing, or a split has both a `.csv` and a `.tsv` file:
  `FileNotFoundError` / `ValueError` naming the folder and the files found;
- a named column is missing: `ValueError` naming the file and listing the
  columns found in its header;
- a row has too few fields, or more fields than the header (an unquoted
  comma or tab inside a text): `ValueError` naming the file and line;
- a field longer than the `csv` module's default limit (131,072 characters):
  read as is; any other malformed CSV: `ValueError` naming the file and line;
- empty (whitespace-only) texts: dropped, counted in a `UserWarning`;
- empty labels: `ValueError` naming the file and lines;
- a split left with no example: `ValueError`;
- dev/test labels absent from train: `ValueError` listing them;
- numeric labels are compared as numbers: `1`, `1.0` and `01` are one class
  (named `1`);
- a training file with a single class: `ValueError` (nothing to classify);
- bytes that are not UTF-8 (with `encoding=None`, the default): each invalid
  byte sequence is decoded as Latin-1 instead and a `UserWarning` says how many
  bytes on how many lines were affected; with an explicit `encoding`, decoding
  is strict and an error names the file and line.
"""

import bisect
import csv
import io
import os
import re
import warnings

from keras_lowrank.data.splits import stratified_split

_EXTENSIONS = {".csv": ",", ".tsv": "\t"}
_SPLIT_FILES = {"train": ("train",), "dev": ("dev", "validation"), "test": ("test",)}


def decode_bytes(data, *, source="<bytes>", encoding=None):
    """Decodes file bytes with the UTF-8 / Latin-1 fallback policy.

    Args:
        data: the raw bytes.
        source: name used in messages (e.g. the file path).
        encoding: `None` for UTF-8 with a per-byte Latin-1 fallback (a
            `UserWarning` counts the affected bytes and lines); any other codec
            name decodes strictly.

    Returns:
        The decoded `str`, without a UTF-8 byte-order mark.
    """
    if encoding is not None:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise ValueError(
                f"Could not decode {source} as {encoding!r} at line {line} "
                f"(byte {error.start}): {error.reason}. Pass `encoding=None` to "
                "fall back to Latin-1 for invalid bytes, or the file's real encoding."
            ) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    view = memoryview(data)
    parts, bad_offsets, bad_bytes, position = [], [], 0, 0
    while True:
        try:
            parts.append(str(view[position:], "utf-8"))
            break
        except UnicodeDecodeError as error:
            start, end = position + error.start, position + error.end
            parts.append(str(view[position:start], "utf-8"))
            # Latin-1 maps every byte to a character, so nothing is lost and
            # legacy (ISO-8859-1) files such as MR or TREC read correctly.
            parts.append(bytes(view[start:end]).decode("latin-1"))
            bad_offsets.append(start)
            bad_bytes += end - start
            position = end
    if bad_offsets:
        newlines = [m.start() for m in re.finditer(b"\n", data)]
        lines = sorted({bisect.bisect_left(newlines, o) + 1 for o in bad_offsets})
        shown = ", ".join(str(n) for n in lines[:10]) + (", ..." if len(lines) > 10 else "")
        warnings.warn(
            f"{source}: {bad_bytes} byte(s) on {len(lines)} line(s) are not valid "
            f"UTF-8 and were decoded as Latin-1 (lines {shown}).",
            UserWarning,
            stacklevel=3,
        )
    return "".join(parts)


def _find_split_file(folder, split):
    found = []
    for stem in _SPLIT_FILES[split]:
        for extension in _EXTENSIONS:
            path = os.path.join(folder, stem + extension)
            if os.path.isfile(path):
                found.append(path)
    if len(found) > 1:
        raise ValueError(
            f"Found several files for the {split!r} split in {folder}: "
            f"{[os.path.basename(p) for p in found]}. Keep exactly one."
        )
    return found[0] if found else None


def read_table(
    path, *, text_column="text", label_column="label", encoding=None, return_lines=False
):
    """Reads one CSV/TSV file into `(texts, labels)` lists of strings.

    `.csv` files are parsed as RFC-4180 CSV (quoted fields may hold commas and
    line breaks); `.tsv` files as one row per line, tab-separated, without
    quoting (the GLUE convention, so a text may contain `"` freely). Empty
    texts are dropped and counted in a warning.

    Args:
        path: path of a `.csv` or `.tsv` file with a header row.
        text_column: header name of the text column.
        label_column: header name of the label column.
        encoding: see `decode_bytes`.
        return_lines: also return the line number of each row, for messages
            about one row.

    Returns:
        `(texts, labels)`: two lists of `str` of equal length; with
        `return_lines`, `(texts, labels, lines)`.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in _EXTENSIONS:
        raise ValueError(
            f"Expected a `.csv` or `.tsv` file, received: path={path!r}"
        )
    with open(path, "rb") as f:
        text = decode_bytes(f.read(), source=path, encoding=encoding)
    delimiter = _EXTENSIONS[extension]
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    # newline="" keeps "\r\n" for the csv module and, unlike str.splitlines(),
    # does not break lines at U+0085 or U+2028 inside texts.
    # The text is already in memory, so a long field costs nothing more; the
    # csv module's default limit (131,072 characters) would reject long
    # documents with a bare `_csv.Error`.
    previous_limit = csv.field_size_limit()
    csv.field_size_limit(max(previous_limit, len(text) + 1))
    try:
        texts, labels, lines = _parse_rows(
            path, text, delimiter, quoting, text_column, label_column
        )
        return (texts, labels, lines) if return_lines else (texts, labels)
    except csv.Error as error:
        raise ValueError(f"{path}: malformed {extension[1:].upper()} ({error})") from None
    finally:
        csv.field_size_limit(previous_limit)


def _parse_rows(path, text, delimiter, quoting, text_column, label_column):
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise ValueError(f"{path}, line {reader.line_num}: {error}") from None
    if header is None:
        raise ValueError(f"{path} is empty: expected a header row naming the columns.")
    header = [h.strip() for h in header]
    missing = [c for c in (text_column, label_column) if c not in header]
    if missing:
        raise ValueError(
            f"{path}: column(s) {missing} not found; columns found: {header}. "
            "Pass `text_column=` / `label_column=` to use other names."
        )
    text_index, label_index = header.index(text_column), header.index(label_column)
    needed = max(text_index, label_index) + 1
    texts, labels, lines, empty_texts, empty_labels = [], [], [], 0, []
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as error:
            raise ValueError(f"{path}, line {reader.line_num}: {error}") from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # Blank line, e.g. a trailing newline.
        if len(row) < needed:
            raise ValueError(
                f"{path}, line {reader.line_num}: expected at least {needed} "
                f"fields, found {len(row)}: {_shorten(row)}"
            )
        if len(row) > len(header):
            # `well, that was fun,pos` would otherwise become the text `well`
            # with a new class ` that was fun`.
            hint = (
                "quote texts that contain commas"
                if delimiter == ","
                else "texts must not contain tabs"
            )
            raise ValueError(
                f"{path}, line {reader.line_num}: expected {len(header)} fields "
                f"(header {header}), found {len(row)}: {_shorten(row)}; {hint}"
            )
        label = row[label_index].strip()
        if not label:
            empty_labels.append(reader.line_num)
            continue
        body = row[text_index].strip()
        if not body:
            empty_texts += 1
            continue
        texts.append(body)
        labels.append(label)
        lines.append(reader.line_num)
    if empty_labels:
        raise ValueError(
            f"{path}: {len(empty_labels)} row(s) have an empty label "
            f"(lines {empty_labels[:10]})."
        )
    if empty_texts:
        warnings.warn(
            f"{path}: dropped {empty_texts} row(s) with an empty text.",
            UserWarning,
            stacklevel=2,
        )
    return texts, labels, lines


def _shorten(row, limit=200):
    text = repr(row)
    return text if len(text) <= limit else text[:limit] + "...]"


def _canonical_label(label):
    """`1`, `1.0` and `01` name one class: numbers are compared as numbers."""
    try:
        value = float(label)
    except ValueError:
        return label
    if not (value == value and abs(value) != float("inf")):
        return label  # "nan", "inf": keep the text.
    if value.is_integer():
        return str(int(value))
    return repr(value)


def _sorted_labels(labels):
    unique = set(labels)
    try:
        return sorted(unique, key=lambda s: (float(s), s))
    except ValueError:
        return sorted(unique)


def load_text_folder(
    path,
    *,
    text_column="text",
    label_column="label",
    dev_fraction=0.1,
    seed=0,
    encoding=None,
):
    """Loads a folder of CSV/TSV files as a `TextClassificationData`.

    The folder must hold `train.csv` or `train.tsv`, `test.csv` or
    `test.tsv`, and optionally `dev.*` (or `validation.*`). The delimiter comes
    from the extension. Class names are the distinct train labels, sorted
    numerically when they all are numbers, else as strings. When there is no
    dev file, a stratified `dev_fraction` of train is held out with `seed`
    (see `keras_lowrank.data.splits.stratified_split`). See the module
    docstring for how bad files are handled.

    Example:

    ```python
    data = keras_lowrank.load_text_folder("my_data/", text_column="sentence")
    ```

    Args:
        path: the folder.
        text_column: header name of the text column.
        label_column: header name of the label column.
        dev_fraction: fraction of train held out as dev when no dev file
            exists, in (0, 1).
        seed: integer seed of the dev split.
        encoding: `None` (UTF-8 with counted Latin-1 fallback) or a codec name
            to decode strictly.

    Returns:
        A `TextClassificationData` named after the folder.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Expected `path` to be a folder, received: path={path!r}")
    if not 0.0 < float(dev_fraction) < 1.0:
        raise ValueError(
            f"Expected `dev_fraction` to be in (0, 1), received: dev_fraction={dev_fraction}"
        )
    files = {split: _find_split_file(path, split) for split in _SPLIT_FILES}
    for split in ("train", "test"):
        if files[split] is None:
            raise FileNotFoundError(
                f"No {split}.csv or {split}.tsv in {path}; files found: "
                f"{sorted(os.listdir(path))}"
            )
    raw = {}
    for split, file in files.items():
        if file is None:
            continue
        raw[split] = read_table(
            file, text_column=text_column, label_column=label_column, encoding=encoding
        )
        if not raw[split][0]:
            raise ValueError(f"{file}: the {split!r} split has no examples.")
        raw[split] = (raw[split][0], [_canonical_label(label) for label in raw[split][1]])
    label_names = _sorted_labels(raw["train"][1])
    if len(label_names) < 2:
        raise ValueError(
            f"{files['train']}: every training example has the label "
            f"{label_names[0]!r}; a classifier needs at least 2 classes."
        )
    index = {name: i for i, name in enumerate(label_names)}
    for split in ("dev", "test"):
        if split in raw:
            unknown = sorted(set(raw[split][1]) - set(index))
            if unknown:
                raise ValueError(
                    f"{files[split]}: label(s) {unknown[:20]} do not occur in the "
                    f"training file {files['train']} (train labels: {label_names[:20]})."
                )
    splits = {s: (t, [index[label] for label in l]) for s, (t, l) in raw.items()}
    if "dev" not in splits:
        texts, labels = splits["train"]
        keep, held_out = stratified_split(labels, [dev_fraction], seed=seed)
        splits["train"] = ([texts[i] for i in keep], [labels[i] for i in keep])
        splits["dev"] = ([texts[i] for i in held_out], [labels[i] for i in held_out])
        if not splits["dev"][0]:
            raise ValueError(
                f"The dev split carved from {files['train']} is empty "
                f"(dev_fraction={dev_fraction}, {len(texts)} examples); add a dev file "
                "or raise `dev_fraction`."
            )
    name = os.path.basename(os.path.normpath(path))
    # `tf.data` splits: TensorFlow only, so imported here; `read_table`
    # and the CSV checks above stay usable on every backend.
    from keras_lowrank.data.text_classification_data import TextClassificationData

    return TextClassificationData.from_arrays(
        name, label_names, splits, source=os.path.abspath(path)
    )
