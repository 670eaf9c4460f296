"""The scripts' top level: every failure the user can act on is one line, never a traceback."""

from __future__ import annotations

import errno
import os

import pytest

from iusdiff.cli import run
from iusdiff.io import write_json

from helpers import read_only


def run_main(main, capsys) -> tuple[int, list[str]]:
    """Exit status and stderr lines of ``run(main)``."""
    with pytest.raises(SystemExit) as stopped:
        run(main, [])
    return stopped.value.code, capsys.readouterr().err.splitlines()


def test_an_operating_system_error_is_one_line_naming_the_file(capsys, tmp_path):
    def refused(argv):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "weights.pth"))

    assert run_main(refused, capsys) == (2, [f"error: {tmp_path / 'weights.pth'}: Permission denied"])


def test_a_write_to_a_read_only_folder_is_one_line_naming_the_output(capsys, tmp_path):
    def write(argv):
        write_json(tmp_path / "options.json", {})

    with read_only(tmp_path):
        assert run_main(write, capsys) == (2, [f"error: {tmp_path / 'options.json'}: Read-only file system"])


def test_an_os_error_without_an_errno_keeps_its_traceback():
    def bug(argv):
        raise OSError("not from the operating system")

    with pytest.raises(OSError, match="not from the operating system"):
        run(bug, [])


def test_sigterm_unwinds_like_ctrl_c_so_atomic_writers_clean_up(capsys, tmp_path):
    import signal

    from iusdiff.io import atomic_path

    def killed_while_writing(argv):
        with atomic_path(tmp_path / "table.csv") as tmp:
            tmp.write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)  # as the runner stopping its stages sends it

    before = signal.getsignal(signal.SIGTERM)
    assert run_main(killed_while_writing, capsys) == (128 + signal.SIGTERM, ["interrupted"])
    assert os.listdir(tmp_path) == []  # no temporary file left behind
    assert signal.getsignal(signal.SIGTERM) is before


def test_progress_in_a_log_is_a_line_per_tenth_never_a_redraw(capsys):
    from iusdiff.cli import LineProgress, progress

    bar = progress(total=25, desc="sample fold 1", unit="pair")  # pytest's stderr is no terminal
    assert isinstance(bar, LineProgress)
    for _ in range(25):
        bar.update()
    bar.close()
    assert list(progress(range(3), desc="slices", unit="case")) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines) and len(lines) == 10 + 3
    assert lines[0].startswith("sample fold 1: 3/25 pair") and lines[9].startswith("sample fold 1: 25/25 pair, ")
    assert lines[9].endswith("pair/s") and lines[-1].startswith("slices: 3/3 case")
