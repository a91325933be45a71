"""What commands write (never an input, --overwrite, full disks, long names,
links, Ctrl-C) and what they read (odd data files, pipes, labels), in one line."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from tests.cli.conftest import CLASSES, DIM, LENGTH, VOCAB, assert_user_error, run_cli

NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _listing(folder):
    return sorted(os.listdir(folder))


@pytest.fixture
def model(files, tmp_path):
    path = tmp_path / "m.keras"
    shutil.copy(files["model"], path)
    return path


# ---------------------------------------------------------------- outputs


@pytest.mark.parametrize(
    "argv",
    [
        ("inspect", "MODEL", "--json", "MODEL"),
        ("inspect", "MODEL", "--json", "LINK", "--overwrite"),
        ("inspect", "MODEL", "--plot", "MODEL_PNG", "--overwrite"),
        ("compress", "MODEL", "MODEL", "--rank", "2", "--overwrite"),
        ("compress", "MODEL", "DOTTED", "--rank", "2", "--overwrite"),
        ("compress", "MODEL", "o.keras", "--size", "0.2", "--train", "DATA", "--validation", "DATA",
         "--json", "DATA_JSON", "--overwrite"),
        ("export", "MODEL", "o.tflite", "--json", "MODEL", "--overwrite"),
    ],
)
def test_no_command_writes_over_its_input(model, files, capsys, tmp_path, argv):
    (tmp_path / "link.json").symlink_to(model)
    png = tmp_path / "m.png"
    os.link(model, png)  # The same file under an image name.
    data = tmp_path / "data.npz"
    shutil.copy(files["data"], data)
    (tmp_path / "data.json").symlink_to(data)
    before = {p: p.read_bytes() for p in (model, data)}
    places = {
        "MODEL": model, "LINK": tmp_path / "link.json", "MODEL_PNG": png, "DATA": data,
        "DATA_JSON": tmp_path / "data.json",
        "DOTTED": tmp_path / "sub" / ".." / "m.keras",
    }
    (tmp_path / "sub").mkdir()
    argv = [places.get(word, tmp_path / word if word.endswith((".keras", ".tflite")) else word) for word in argv]
    code, _, err = run_cli(capsys, *argv)
    assert_user_error(code, err, "is the same file as the")
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "o.keras").exists() and not (tmp_path / "o.tflite").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ("inspect", "MODEL", "--json", "OLD"),
        ("inspect", "MODEL", "--plot", "OLD_PNG"),
        ("schedule", "--plot", "OLD_PNG"),
        ("export", "MODEL", "o.tflite", "--json", "OLD"),
    ],
)
def test_an_existing_output_is_replaced_only_with_overwrite(model, capsys, tmp_path, argv):
    places = {"MODEL": model, "OLD": tmp_path / "old.json", "OLD_PNG": tmp_path / "old.png"}
    for name in ("old.json", "old.png"):
        (tmp_path / name).write_text("keep me\n")
    argv = [places.get(w, tmp_path / w if w.endswith(".tflite") else w) for w in argv]
    code, _, err = run_cli(capsys, *argv)
    assert_user_error(code, err, "already exists", "--overwrite")
    assert (tmp_path / "old.json").read_text() == (tmp_path / "old.png").read_text() == "keep me\n"


@pytest.mark.parametrize(
    "argv, written",
    [
        (("inspect", "MODEL", "--json", "OLD", "--overwrite"), "old.json"),
        (("schedule", "--plot", "OLD_PNG", "--overwrite"), "old.png"),
    ],
)
def test_overwrite_replaces(model, capsys, tmp_path, argv, written):
    places = {"MODEL": model, "OLD": tmp_path / "old.json", "OLD_PNG": tmp_path / "old.png"}
    (tmp_path / written).write_text("old\n")
    code, _, _ = run_cli(capsys, *[places.get(w, w) for w in argv])
    assert code == 0 and (tmp_path / written).read_text(errors="replace") != "old\n"


def test_overwrite_through_a_link_replaces_its_target_and_keeps_the_link(model, capsys, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    target = real / "small.keras"
    target.write_text("old\n")
    link = tmp_path / "small.keras"
    link.symlink_to(target)
    code, _, _ = run_cli(capsys, "compress", model, link, "--rank", 2, "--overwrite")
    assert code == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:2] == b"PK"  # A .keras archive now.
    assert _listing(real) == ["small.keras"]


@pytest.mark.parametrize("extra_bytes", [0, 1])
def test_long_output_names(model, capsys, tmp_path, extra_bytes):
    # 255 bytes is the longest name the filesystem takes: it must work (the
    # temporary name must not overflow it); one byte more is refused up front.
    name = "a" * (255 - len(".keras") + extra_bytes) + ".keras"
    code, out, err = run_cli(capsys, "compress", model, tmp_path / name, "--rank", 2)
    if extra_bytes:
        assert_user_error(code, err, "256 bytes long", "limit of 255")
        assert "wrote" not in out
        assert _listing(tmp_path) == ["m.keras"]
    else:
        assert code == 0, err
        assert _listing(tmp_path) == sorted(["m.keras", name])


def _raise_no_space(*args, **kwargs):
    raise NO_SPACE


@pytest.mark.parametrize("command", ["compress", "export", "inspect --json", "inspect --plot", "schedule --plot"])
def test_a_full_disk_is_one_line_and_leaves_the_old_file(model, capsys, tmp_path, monkeypatch, command):
    import keras
    import matplotlib.figure

    import keras_lowrank.export
    import keras_lowrank.utils.atomic_write as atomic_write

    def partial_then_full(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise NO_SPACE

    monkeypatch.setattr(keras.Model, "save", partial_then_full)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", partial_then_full)
    monkeypatch.setattr(atomic_write.json, "dump", _raise_no_space)
    monkeypatch.setattr(keras_lowrank.export, "export_tflite", _raise_no_space)
    old = {
        "compress": tmp_path / "o.keras", "export": tmp_path / "o.tflite",
        "inspect --json": tmp_path / "o.json", "inspect --plot": tmp_path / "o.png",
        "schedule --plot": tmp_path / "o.png",
    }[command]
    old.write_text("old\n")
    name, *flag = command.split()
    argv = {
        "compress": ["compress", model, old, "--rank", 2],
        "export": ["export", model, old],
        "inspect": ["inspect", model, *flag, old],
        "schedule": ["schedule", *flag, old],
    }[name]
    code, _, err = run_cli(capsys, *argv, "--overwrite")
    assert_user_error(code, err, "could not write", str(old), "No space left on device")
    assert old.read_text() == "old\n"
    assert _listing(tmp_path) == sorted(["m.keras", old.name])


class _SwallowedInterrupt:
    """Raises SIGINT from `__del__`, as a Ctrl-C landing in TensorFlow's cleanup."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.usefixtures("python_sigint_handler")
def test_a_swallowed_interrupt_ends_the_command_with_130(model, capsys, tmp_path, monkeypatch):
    import keras_lowrank.surgery

    real = keras_lowrank.surgery.factorize_embeddings

    def factorize_then_interrupted(*args, **kwargs):
        victim = _SwallowedInterrupt()
        del victim  # Python prints "Exception ignored" and goes on.
        return real(*args, **kwargs)

    monkeypatch.setattr(keras_lowrank.surgery, "factorize_embeddings", factorize_then_interrupted)
    old = tmp_path / "o.keras"
    old.write_text("old\n")
    code, out, err = run_cli(capsys, "compress", model, old, "--rank", 2, "--overwrite")
    assert code == 130
    assert [line for line in err.splitlines() if line.strip()] == ["keras-lowrank: interrupted"]
    assert old.read_text() == "old\n" and "wrote" not in out
    assert _listing(tmp_path) == ["m.keras", "o.keras"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ----------------------------------------------------------------- inputs


def _run_with_deadline(capsys, fifo, *argv):
    """Runs the CLI in a thread; unblocks a reader stuck on `fifo` after a while."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(out=run_cli(capsys, *argv)), daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        with open(fifo, "wb") as f:  # Lets the blocked reader go on.
            f.write(b"not a model")
        thread.join(60)
        pytest.fail(f"{argv[0]} blocked reading the named pipe {fifo}")
    return result["out"]


@pytest.mark.parametrize("role", ["model", "--fine-tune", "--train", "--representative"])
def test_a_named_pipe_is_refused_not_read(model, files, capsys, tmp_path, role):
    fifo = tmp_path / ("pipe.keras" if role == "model" else "pipe.npz")
    os.mkfifo(fifo)
    argv = {
        "model": ["inspect", fifo],
        "--fine-tune": ["compress", model, tmp_path / "o.keras", "--rank", 2, "--fine-tune", fifo],
        "--train": ["compress", model, tmp_path / "o.keras", "--size", 0.2, "--train", fifo,
                    "--validation", files["data"]],
        "--representative": ["export", model, tmp_path / "o.tflite", "--quantize", "int8",
                             "--representative", fifo],
    }[role]
    code, _, err = _run_with_deadline(capsys, fifo, *argv)
    assert_user_error(code, err, "regular file", str(fifo))


def _odd_file(tmp_path, kind):
    path = tmp_path / ("data.npy" if kind == "npy" else "data.npz")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x00\x01 definitely not numpy \xff" * 10)
    elif kind == "bad zip":
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    elif kind == "npy":
        np.save(path, np.zeros((4, LENGTH), dtype="int32"))
    elif kind == "npy named npz":
        with open(path, "wb") as f:
            np.save(f, np.zeros((4, LENGTH), dtype="int32"))
    return path


@pytest.mark.parametrize("kind", ["empty", "garbage", "bad zip", "npy", "npy named npz"])
@pytest.mark.parametrize("role", ["--fine-tune", "--train", "--validation", "--representative"])
def test_odd_data_files_are_one_line_errors_naming_the_file(model, files, capsys, tmp_path, kind, role):
    path = _odd_file(tmp_path, kind)
    out = tmp_path / "o.keras"
    argv = {
        "--fine-tune": ["compress", model, out, "--rank", 2, "--fine-tune", path],
        "--train": ["compress", model, out, "--size", 0.2, "--train", path, "--validation", files["data"]],
        "--validation": ["compress", model, out, "--size", 0.2, "--train", files["data"], "--validation", path],
        "--representative": ["export", model, tmp_path / "o.tflite", "--quantize", "int8", "--representative", path],
    }[role]
    code, _, err = run_cli(capsys, *argv)
    assert_user_error(code, err, role, str(path))


def _budget(model, capsys, tmp_path, train, validation=None):
    return run_cli(
        capsys, "compress", model, tmp_path / "o.keras", "--size", 0.2, "--train", train,
        "--validation", validation or train, "--epochs", 1,
    )


def _npz(tmp_path, name="labels.npz", **overrides):
    rng = np.random.default_rng(1)
    arrays = {"x": rng.integers(1, VOCAB, size=(12, LENGTH)).astype("int32"),
              "y": rng.integers(0, CLASSES, size=12)}
    arrays.update(overrides)
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_budget_mode_refuses_fractional_npz_labels(model, capsys, tmp_path):
    path = _npz(tmp_path, y=np.arange(12) % CLASSES + 0.7)
    code, out, err = _budget(model, capsys, tmp_path, path)
    assert_user_error(code, err, str(path), "integer class ids", "0.7", "row 0")
    assert "candidate" not in out


def test_budget_mode_accepts_integer_valued_float_labels(model, capsys, tmp_path, monkeypatch):
    import keras_lowrank.compression

    seen = {}

    def fake_compress(model, train, validation, **kwargs):
        seen["y"] = train[1]
        raise ValueError("stop here")

    # The command line calls the public `keras_lowrank.compress`, bound from here.
    monkeypatch.setattr(keras_lowrank.compression, "compress", fake_compress)
    path = _npz(tmp_path, y=(np.arange(12) % CLASSES).astype("float32"))
    code, _, err = _budget(model, capsys, tmp_path, path)
    assert_user_error(code, err, "stop here")  # The API's ValueError, in one line.
    assert seen["y"].dtype == np.int64 and seen["y"].tolist() == (np.arange(12) % CLASSES).tolist()


@pytest.mark.parametrize("label", ["1.5", "inf", "1e30", "nan", "two"])
def test_budget_mode_refuses_csv_labels_that_are_not_integers(model, capsys, tmp_path, label):
    path = tmp_path / "train.csv"
    path.write_text(f"text,label\ngood movie,1\nbad movie,{label}\nfine,0\n")
    code, _, err = _budget(model, capsys, tmp_path, path)
    assert_user_error(code, err, str(path), "line 3", repr(label))


@pytest.mark.parametrize(
    "split, overrides, fragments",
    [
        ("--train", {"y": np.array([0, 1, 2, CLASSES] * 3)}, ("y holds label 3 (row 3)",)),
        ("--train", {"y": np.array([0, -1, 2] * 4)}, ("y holds label -1 (row 1)",)),
        ("--validation", {"y": np.array([0, 1, 2, 9] * 3)}, ("y holds label 9",)),
        ("--validation", {"x": np.full((12, LENGTH), VOCAB, dtype="int32")}, (f"x holds id {VOCAB}",)),
    ],
)
def test_budget_mode_checks_labels_and_ids_against_the_model(model, files, capsys, tmp_path, split, overrides, fragments):
    bad = _npz(tmp_path, **overrides)
    train, validation = (bad, files["data"]) if split == "--train" else (files["data"], bad)
    code, out, err = _budget(model, capsys, tmp_path, train, validation)
    assert_user_error(code, err, f"{split} {bad}", *fragments)
    assert "candidate" not in out


def test_fine_tune_nan_label_is_named_with_its_row(model, capsys, tmp_path):
    y = (np.arange(12) % CLASSES).astype("float64")
    y[4] = np.nan
    path = _npz(tmp_path, y=y)
    code, out, err = run_cli(capsys, "compress", model, tmp_path / "o.keras", "--rank", 2, "--fine-tune", path)
    assert_user_error(code, err, str(path), "y holds label nan (row 4)")
    assert "Epoch" not in out


# ---------------------------------------------------------------- inspect


def test_inspect_describes_a_factorized_table_against_itself(model, capsys, tmp_path):
    small, report = tmp_path / "small.keras", tmp_path / "small.json"
    assert run_cli(capsys, "compress", model, small, "--rank", 10)[0] == 0
    code, out, _ = run_cli(capsys, "inspect", small, "--json", report)
    assert code == 0
    (record,) = json.loads(report.read_text())
    assert record["rank"] == 10 and record["options_relative_to"] == "stored"
    assert record["compression"] == pytest.approx(1 - record["stored_bytes"] / (VOCAB * DIM * 4))
    assert "factorized at rank 10" in out and f"compression {record['compression']:.2f}" in out

    import keras

    layer = keras.saving.load_model(small).get_layer("embedding")
    reference = np.linalg.svd(np.asarray(layer.embeddings, dtype=np.float64), compute_uv=False)[:10]
    # Rank 10 -> floor((1 - c) * 10); 0.95 leaves no rank and is not offered.
    assert [(o["compression"], o["rank"]) for o in record["options"]] == [(0.5, 5), (0.8, 2), (0.9, 1)]
    for option in record["options"]:
        rank = option["rank"]
        assert option["params"] == rank * (VOCAB + DIM)
        assert option["energy_kept"] == pytest.approx(np.sum(reference[:rank] ** 2) / np.sum(reference**2), rel=1e-4)


# ------------------------------------------------------------ start-up noise


def test_no_tensorflow_start_up_noise_on_stderr(files):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-m", "keras_lowrank", "inspect", files["model"]],
        capture_output=True, text=True, timeout=300, env=env, cwd=root,
    )
    assert result.returncode == 0, result.stderr
    for noise in ("absl::InitializeLog", "oneDNN", "cpu_feature_guard", "I0000"):
        assert noise not in result.stderr, result.stderr


def test_a_users_own_log_level_wins(files, capsys, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert run_cli(capsys, "inspect", files["model"])[0] == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
