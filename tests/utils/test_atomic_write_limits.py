"""Atomic writes at the edges: links, long names, lost Ctrl-C, failed fsync."""

import errno
import os
import signal

import pytest

from keras_lowrank.utils import atomic_write
from keras_lowrank.utils.atomic_write import atomic_path
from keras_lowrank.utils.atomic_write import name_max
from keras_lowrank.utils.atomic_write import record_interrupts
from keras_lowrank.utils.atomic_write import write_text

pytestmark = pytest.mark.backend_agnostic


def test_a_link_is_written_through_and_kept(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    target = real / "notes.md"
    target.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    # The temporary file lived next to the real file, and is gone.
    assert sorted(os.listdir(real)) == ["notes.md"]
    assert sorted(os.listdir(tmp_path)) == ["link.md", "real"]


def test_a_dangling_link_creates_the_file_it_names(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "made.json")
    write_text(link, "{}")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "{}"


@pytest.mark.parametrize(
    "name",
    [
        "a" * (255 - len(".keras")) + ".keras",
        "m" + ".part" * 48 + ".weights.h5",
        "é" * 120 + ".png",  # 240 characters, 244 bytes.
    ],
)
def test_a_name_at_the_limit_gets_a_temporary_name_within_it(tmp_path, name):
    assert len(os.fsencode(name)) <= name_max(str(tmp_path)) == 255
    target = tmp_path / name
    with atomic_path(target) as tmp:
        assert len(os.fsencode(os.path.basename(tmp))) <= 255
        # The format suffix is what writers look at: it always stays.
        assert tmp.endswith(os.path.splitext(name)[1])
        with open(tmp, "w") as f:
            f.write("new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == [name]


class _SwallowedInterrupt:
    """Raises SIGINT from `__del__`, where Python prints and ignores it."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.usefixtures("python_sigint_handler")
def test_a_swallowed_interrupt_still_stops_the_replace(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("new")
            victim = _SwallowedInterrupt()
            del victim  # The KeyboardInterrupt goes to sys.unraisablehook.
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.usefixtures("python_sigint_handler")
def test_record_interrupts_counts_only_inside_its_block():
    with pytest.raises(KeyboardInterrupt):
        with record_interrupts():
            signal.raise_signal(signal.SIGINT)
    with record_interrupts():
        assert not atomic_write.interrupted()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_fsync_error_fails_the_write(tmp_path, monkeypatch):
    target = tmp_path / "model.json"
    target.write_text("old")

    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.json"]
