"""Command-line plumbing shared by every script: one error type, one `error:` line, atomic writes,
signals as an exception. Imports nothing of this project's, so every module may use it."""

import argparse
import errno
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn


class InputError(ValueError):
    """A user-supplied path, file or value that cannot be used; its message says what to do."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, like KeyboardInterrupt, so that no `except Exception`
    on the way (logging swallows those raised while it writes a line) can stop it."""


def exit_with(error: Exception | str, code: int = 2) -> NoReturn:
    """End the program with `error: <message>` as one line on stderr (2: bad input, as argparse)."""
    message = " ".join(str(error).split()) or type(error).__name__
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose own errors (unknown option, bad choice, missing argument) are one `error:` line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        exit_with(f"{message} (see {self.prog} --help)")


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """From now on SIGINT and SIGTERM raise Interrupted (with the signal's name) in the main thread."""
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)


def _exit_interrupted(signum, frame) -> None:
    exit_with(f"interrupted by {signal.Signals(signum).name}", code=130)


def exit_on_signals() -> None:
    """For a script still starting (importing MXNet takes seconds): SIGINT and SIGTERM end it with one
    `error:` line and exit 130, never a KeyboardInterrupt traceback. Scripts only, never a library."""
    signal.signal(signal.SIGINT, _exit_interrupted)
    signal.signal(signal.SIGTERM, _exit_interrupted)


def run_main(main: Callable[[], None]) -> None:
    """Run a script's `main`: an InputError becomes one `error:` line (exit 2), Ctrl-C or SIGTERM one line
    (exit 130), and a reader that closed our standard output (`... | head -2`) a quiet exit, as a Unix
    filter's (141, as if by SIGPIPE): never a traceback."""
    try:
        main()
        sys.stdout.flush()
    except InputError as error:
        exit_with(error)
    except KeyboardInterrupt:
        exit_with("interrupted by SIGINT", code=130)
    except Interrupted as signal_name:
        exit_with(f"interrupted by {signal_name}", code=130)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush must not fail again
        sys.exit(128 + signal.SIGPIPE)
    except OSError as error:
        if not (_stdout_fails() or (error.errno in WRITE_ERRORS and error.filename is None)):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        exit_with(f"cannot write to standard output: {error.strerror or error}", code=1)


WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)  # a write that failed, no file named


def _stdout_fails() -> bool:
    """Whether standard output cannot take what is written to it (/dev/full, a full disk): an OSError
    from main was then its write, not a file of the user's."""
    try:
        sys.stdout.flush()  # what failed to go out is still buffered: it fails again
        return False
    except (OSError, ValueError):
        return True


def write_atomically(path: str, write: Callable[[str], None]) -> None:
    """`write(temporary)`, then rename the temporary file to `path`: a reader (or a killed writer)
    never sees half a file, and a failed write (disk full, no permission) leaves `path` as it was,
    removes the temporary file and raises InputError naming the reason."""
    temporary = temporary_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # RuntimeError: MXNet's own writers (MXNetError)
        lines = str(error).strip().splitlines() or [type(error).__name__]
        reason = getattr(error, "strerror", None) or lines[-1]
        raise InputError(f"cannot write {path}: {reason}") from None
    finally:
        if os.path.lexists(temporary):
            try:
                os.remove(temporary)
            except OSError:
                pass


TEMPORARY_MARK = ".tmp"  # write_atomically's temporary file is PATH.tmpPID


def temporary_path(path: str) -> str:
    return f"{path}{TEMPORARY_MARK}{os.getpid()}"


def write_text(text: str) -> Callable[[str], None]:
    """A writer for write_atomically that writes `text`."""
    def write(path: str) -> None:
        with open(path, "w") as file:
            file.write(text)
    return write


def check_count(name: str, value: int, most: int) -> None:
    """Raise InputError unless 1 <= value <= most: counts of processes, devices and the like."""
    if not 1 <= value <= most:
        raise InputError(f"--{name} must be between 1 and {most} on this machine, got {value}")


MAX_SEED = 2 ** 32 - 1  # NumPy's and MXNet's seeds are 32-bit


def check_seed(seed: int | None) -> None:
    """Raise InputError unless `seed` is None or 0..MAX_SEED (a negative one is a NumPy traceback)."""
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise InputError(f"--seed must be between 0 and {MAX_SEED}, got {seed}")


def mxnet_missing(what: str) -> str:
    """The message for `what` (something that needs MXNet) in a Python without it (the ONNX venv)."""
    return (f"{what} needs MXNet, which this Python ({sys.executable}) lacks: run it with the project's .venv "
            "(.venv/bin/python), or read an exported model with --onnx FILE")


def same_file(path: str, other: str) -> bool:
    """Whether two paths name one existing file (through links, `./` and the like)."""
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False
