"""CSV/TSV folder loader, including every bad-file case."""

import numpy as np
import pytest

from keras_lowrank.data.text_files import decode_bytes
from keras_lowrank.data.text_files import load_text_folder


def _write(folder, name, content):
    path = folder / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


TRAIN = "text,label\n" + "".join(f"good text {i},pos\nbad text {i},neg\n" for i in range(10))


def test_csv_with_dev_and_quotes(tmp_path):
    _write(tmp_path, "train.csv", TRAIN + '"quoted, with comma",pos\n')
    _write(tmp_path, "dev.csv", "text,label\nfine,pos\n")
    _write(tmp_path, "test.csv", "label,text\nneg,meh\r\npos,\"multi\nline\"\r\n")
    data = load_text_folder(tmp_path)
    assert data.label_names == ("neg", "pos")
    assert data.num_examples("train") == 21
    assert "quoted, with comma" in data.texts("train")
    assert data.texts("test") == ["meh", "multi\nline"]
    np.testing.assert_array_equal(data.labels("test"), [0, 1])
    assert data.name == tmp_path.name


def test_tsv_custom_columns_and_carved_dev(tmp_path):
    rows = "".join(f'say "hi {i}\t{i % 3}\n' for i in range(30))
    _write(tmp_path, "train.tsv", "sentence\tclass\n" + rows)
    _write(tmp_path, "test.tsv", "sentence\tclass\nx\t2\n")
    data = load_text_folder(tmp_path, text_column="sentence", label_column="class", dev_fraction=0.2, seed=5)
    assert data.label_names == ("0", "1", "2")
    assert data.num_examples("dev") == 6 and data.num_examples("train") == 24
    np.testing.assert_array_equal(np.bincount(data.labels("dev")), [2, 2, 2])
    assert data.texts("test") == ["x"]
    again = load_text_folder(tmp_path, text_column="sentence", label_column="class", dev_fraction=0.2, seed=5)
    assert again.texts("dev") == data.texts("dev")


def test_numeric_labels_sorted_numerically(tmp_path):
    _write(tmp_path, "train.csv", "text,label\na,10\nb,2\nc,1\n")
    _write(tmp_path, "dev.csv", "text,label\na,2\n")
    _write(tmp_path, "test.csv", "text,label\na,10\n")
    assert load_text_folder(tmp_path).label_names == ("1", "2", "10")


def test_missing_column_names_file_and_columns(tmp_path):
    _write(tmp_path, "train.csv", "sentence,label\na,x\n")
    _write(tmp_path, "test.csv", "sentence,label\na,x\n")
    with pytest.raises(ValueError, match=r"train\.csv.*\['text'\].*columns found: \['sentence', 'label'\]"):
        load_text_folder(tmp_path)


def test_missing_files(tmp_path):
    _write(tmp_path, "train.csv", TRAIN)
    with pytest.raises(FileNotFoundError, match="test.csv or test.tsv"):
        load_text_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="folder"):
        load_text_folder(tmp_path / "absent")


def test_two_files_for_one_split(tmp_path):
    _write(tmp_path, "train.csv", TRAIN)
    _write(tmp_path, "train.tsv", "text\tlabel\na\tpos\n")
    _write(tmp_path, "test.csv", "text,label\na,pos\n")
    with pytest.raises(ValueError, match="several files"):
        load_text_folder(tmp_path)


def test_empty_split(tmp_path):
    _write(tmp_path, "train.csv", TRAIN)
    _write(tmp_path, "test.csv", "text,label\n")
    with pytest.raises(ValueError, match="'test' split has no examples"):
        load_text_folder(tmp_path)


def test_empty_file(tmp_path):
    _write(tmp_path, "train.csv", TRAIN)
    _write(tmp_path, "test.csv", "")
    with pytest.raises(ValueError, match="header"):
        load_text_folder(tmp_path)


def test_unknown_test_labels_listed(tmp_path):
    _write(tmp_path, "train.csv", TRAIN)
    _write(tmp_path, "test.csv", "text,label\na,neutral\nb,pos\nc,mixed\n")
    with pytest.raises(ValueError, match=r"\['mixed', 'neutral'\] do not occur"):
        load_text_folder(tmp_path)


def test_empty_texts_dropped_and_counted(tmp_path):
    _write(tmp_path, "train.csv", TRAIN + "   ,pos\n,neg\n")
    _write(tmp_path, "test.csv", "text,label\na,pos\n")
    with pytest.warns(UserWarning, match="dropped 2 row"):
        data = load_text_folder(tmp_path)
    assert data.num_examples("train") + data.num_examples("dev") == 20


def test_empty_label_and_short_row_error(tmp_path):
    _write(tmp_path, "train.csv", TRAIN + "text only,\n")
    _write(tmp_path, "test.csv", "text,label\na,pos\n")
    with pytest.raises(ValueError, match="empty label"):
        load_text_folder(tmp_path)
    _write(tmp_path, "train.csv", TRAIN + "no second field\n")
    with pytest.raises(ValueError, match="line 22"):
        load_text_folder(tmp_path)


def test_latin1_fallback_is_counted(tmp_path):
    train = (TRAIN + "caf\xe9 cr\xe8me,pos\n").encode("latin-1") + "na\u00efve,neg\n".encode("utf-8")
    _write(tmp_path, "train.csv", train)
    _write(tmp_path, "test.csv", "text,label\na,pos\n")
    with pytest.warns(UserWarning, match="2 byte\\(s\\) on 1 line\\(s\\).*Latin-1.*lines 22"):
        data = load_text_folder(tmp_path)
    every = data.texts("train") + data.texts("dev")
    assert "caf\xe9 cr\xe8me" in every and "na\u00efve" in every


def test_strict_encoding_errors(tmp_path):
    _write(tmp_path, "train.csv", (TRAIN + "caf\xe9,pos\n").encode("latin-1"))
    _write(tmp_path, "test.csv", "text,label\na,pos\n")
    with pytest.raises(ValueError, match="line 22"):
        load_text_folder(tmp_path, encoding="utf-8")


def test_decode_bytes_keeps_nel_and_bom():
    assert decode_bytes(b"\xef\xbb\xbfa\xc2\x85b") == "a\x85b"


def test_field_longer_than_the_csv_default_limit_is_read(tmp_path):
    import csv

    long_text = "word " * 40_000  # 200,000 characters > csv's 131,072 limit
    limit = csv.field_size_limit()
    _write(tmp_path, "train.csv", TRAIN + f'"{long_text}",pos\n')
    _write(tmp_path, "test.csv", "text,label\nx,pos\n")
    data = load_text_folder(tmp_path)
    assert long_text.strip() in data.texts("train") + data.texts("dev")
    assert csv.field_size_limit() == limit  # the process-wide limit is restored


def test_malformed_csv_names_file_and_line(tmp_path):
    _write(tmp_path, "train.csv", TRAIN + '"unterminated quote,pos\n')
    _write(tmp_path, "test.csv", "text,label\nx,pos\n")
    with pytest.raises(ValueError, match=r"train\.csv"):
        load_text_folder(tmp_path)


@pytest.mark.parametrize(
    "name, row, hint",
    [("train.csv", "well, that was fun,pos\n", "quote texts"),
     ("train.tsv", "well\tthat was fun\tpos\n", "tabs")],
)
def test_row_with_more_fields_than_the_header_names_file_and_line(tmp_path, name, row, hint):
    train = TRAIN if name.endswith(".csv") else TRAIN.replace(",", "\t")
    _write(tmp_path, name, train + row)
    _write(tmp_path, "test" + name[-4:], "text,label\nx,pos\n".replace(",", name[-4:] == ".tsv" and "\t" or ","))
    with pytest.raises(ValueError, match=rf"{name}, line 22: expected 2 fields.*found 3.*{hint}"):
        load_text_folder(tmp_path)


def test_numeric_labels_that_are_equal_numbers_are_one_class(tmp_path):
    _write(tmp_path, "train.csv", "text,label\n" + "".join(f"a{i},1\nb{i},1.0\nc{i},0\n" for i in range(5)))
    _write(tmp_path, "test.csv", "text,label\nx,01\ny,0.0\n")
    data = load_text_folder(tmp_path)
    assert data.label_names == ("0", "1")
    np.testing.assert_array_equal(data.labels("test"), [1, 0])


def test_single_class_training_file_is_an_error(tmp_path):
    _write(tmp_path, "train.csv", "text,label\n" + "".join(f"t{i},pos\n" for i in range(10)))
    _write(tmp_path, "test.csv", "text,label\nx,pos\n")
    with pytest.raises(ValueError, match="at least 2 classes"):
        load_text_folder(tmp_path)
