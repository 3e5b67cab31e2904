"""The shared command-line plumbing: one error line, atomic writes, signals."""

import logging
import os
import signal
import subprocess

import pytest

from conftest import PYTHON, ROOT
from lstm_ocr.cli import (
    ArgumentParser,
    InputError,
    Interrupted,
    _raise_interrupted,
    check_count,
    run_main,
    write_atomically,
)


def test_a_signal_while_a_log_line_is_written_still_stops_the_program():
    """logging swallows an Exception raised while it writes; the interrupt must get through."""

    class SignalledStream:
        def write(self, text: str) -> None:
            _raise_interrupted(signal.SIGTERM, None)

        def flush(self) -> None:
            pass

    logger = logging.getLogger("test_interrupt")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(SignalledStream()))
    with pytest.raises(Interrupted):
        logger.warning("a line")


def test_argparse_errors_are_one_error_line(capsys):
    parser = ArgumentParser(prog="prog")
    parser.add_argument("--loss", choices=("ctc", "warpctc"))
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--loss", "nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "usage" not in err and "'nope'" in err


def test_run_main_turns_an_input_error_into_one_line(capsys):
    def main() -> None:
        raise InputError("the reason\nacross lines")

    with pytest.raises(SystemExit) as exit_info:
        run_main(main)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: the reason across lines\n"


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "kept.txt"
    target.write_text("old")

    def write(path: str) -> None:
        with open(path, "w") as file:
            file.write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(InputError, match="cannot write .*kept.txt: No space left on device"):
        write_atomically(str(target), write)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["kept.txt"]


@pytest.mark.parametrize("value", [0, -1, 10_000])
def test_counts_far_beyond_the_machine_are_refused(value):
    with pytest.raises(InputError, match="--num_proc must be between 1 and 8"):
        check_count("num_proc", value, 8)


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`... | head -1`: the reader goes away; the writer stops quietly, as a Unix filter does (141, as if
    by SIGPIPE, which `set -o pipefail` shows), no traceback and no error line."""
    script = tmp_path / "many.py"
    script.write_text(f"import sys\nsys.path.insert(0, {ROOT!r})\nfrom lstm_ocr.cli import run_main\n"
                      "def main():\n    for i in range(200000):\n        print(i)\nrun_main(main)\n")
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {PYTHON} {script} | head -1"], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout == "0\n" and result.stderr == "" and result.returncode == 141


def sigint_as_at_a_terminal() -> None:
    """A background job's children start with SIGINT ignored (so the shell leaves them running), and
    Python then keeps it ignored; a script typed at a terminal starts with it at the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_a_script_starts_is_one_line():
    """venv_check (imported first by the MXNet scripts) makes SIGINT during the slow imports one line."""
    script = os.path.join(ROOT, "lstm_ocr_train.py")
    code = (f"import sys; sys.argv[0] = {script!r}; import os, signal, time, lstm_ocr.venv_check; "
            "os.kill(os.getpid(), signal.SIGINT); time.sleep(30)")
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            preexec_fn=sigint_as_at_a_terminal)
    assert result.returncode == 130 and result.stderr == "error: interrupted by SIGINT\n"
    library = subprocess.run([PYTHON, "-c", "import signal, lstm_ocr.venv_check; "
                              "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler"], cwd=ROOT,
                             preexec_fn=sigint_as_at_a_terminal)
    assert library.returncode == 0  # imported by a library user (from lstm_ocr import Reader): handlers untouched


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), Interrupted("SIGTERM")])
def test_an_interrupt_inside_main_is_one_line(capsys, raised):
    def main():
        raise raised
    with pytest.raises(SystemExit) as stopped:
        run_main(main)
    assert stopped.value.code == 130
    assert capsys.readouterr().err.startswith("error: interrupted by SIG")


@pytest.mark.parametrize("lines", [1, 200000])
def test_output_into_a_full_device_is_one_line(tmp_path, lines):
    """`... > /dev/full`: a write (or the last flush) fails with ENOSPC; one line, exit 1. An OSError of
    main's own (a missing file) is not mistaken for it."""
    script = tmp_path / "full.py"
    script.write_text(f"import sys\nsys.path.insert(0, {ROOT!r})\nfrom lstm_ocr.cli import run_main\n"
                      f"def main():\n    for i in range({lines}):\n        print(i)\nrun_main(main)\n")
    result = subprocess.run(f"{PYTHON} {script} > /dev/full", shell=True, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == "error: cannot write to standard output: No space left on device\n"
    script.write_text(f"import sys\nsys.path.insert(0, {ROOT!r})\nfrom lstm_ocr.cli import run_main\n"
                      "def main():\n    open('/nonexistent/x')\nrun_main(main)\n")
    result = subprocess.run([PYTHON, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "FileNotFoundError" in result.stderr
