"""The trainer's life cycle as a user meets it: resume, signals at any moment, dead workers, kills."""

import os
import pickle
import selectors
import signal
import subprocess
import time

import pytest

from conftest import PYTHON, ROOT, assert_all_exit, children_of, run_script
from lstm_ocr import checkpoint

TINY = ["--train_epoch_size", "256", "--eval_epoch_size", "64", "--batch_size", "32", "--num_hidden", "16",
        "--pool_size", "128", "--num_proc", "2"]
SLOW_EPOCHS = ["--num_epoch", "50", "--train_epoch_size", "3200"]  # long enough to be interrupted


class Trainer:
    """lstm_ocr_train.py in a subprocess whose log can be waited on."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([PYTHON, os.path.join(ROOT, "lstm_ocr_train.py"), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = ""
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stderr, selectors.EVENT_READ)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log}"
            if self.selector.select(timeout=1):
                line = self.proc.stderr.readline()
                assert line, f"trainer ended before {text!r}:\n{self.log}"
                self.log += line

    def finish(self, timeout: float = 60) -> int:
        """Wait for the exit; the rest of the log is read too."""
        _, rest = self.proc.communicate(timeout=timeout)
        self.log += rest
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def trainer():
    started = []

    def start(*args: str) -> Trainer:
        started.append(Trainer(*args))
        return started[-1]

    yield start
    for t in started:
        t.kill()


def test_resume_continues_the_epoch_count_with_optimizer_state(font, tmp_path):
    prefix = str(tmp_path / "ocr")
    first = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "1", "--prefix", prefix, font)
    assert first.returncode == 0, first.stderr
    resumed = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "2", "--load_epoch", "1", "--prefix", prefix, font)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming from {prefix}-0001.params" in resumed.stderr
    assert "No optimizer state" not in resumed.stderr
    assert "Epoch[1]" not in resumed.stderr and "Epoch[2] Validation-accuracy=" in resumed.stderr
    assert checkpoint.saved_epochs(prefix) == [1, 2]
    wrong = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "3", "--load_epoch", "2", "--network", "unrolled",
                       "--prefix", prefix, font)
    assert wrong.returncode == 2 and "resume with --network fused" in wrong.stderr
    letters = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "3", "--load_epoch", "2", "--chars", "abcdefghij",
                         "--prefix", prefix, font)
    assert letters.returncode == 2 and "trained with --chars '0123456789'" in letters.stderr, letters.stderr


class _Payload:
    """Unpickling this runs a command: what a crafted .states file could do to a pickle loader."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), \
        result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_prefix_belongs_to_one_run_and_its_files_are_never_trusted(font, tmp_path):
    prefix = str(tmp_path / "ocr")
    first = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "2", "--prefix", prefix, font)
    assert first.returncode == 0, first.stderr
    files = {path: open(path, "rb").read() for path in checkpoint.file_names(prefix, [1, 2])
             if os.path.isfile(path) and path != checkpoint.lock_path(prefix)}
    assert len(files) == 8  # symbol, meta, history, curves, 2 params, 2 states

    again = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "1", "--network", "unrolled", "--prefix", prefix,
                       font)
    _one_line(again, "already holds a run (epochs 1-2)", "--load_epoch 2", "--overwrite")
    assert {path: open(path, "rb").read() for path in files} == files

    marker = tmp_path / "pwned"
    with open(checkpoint.states_path(prefix, 2), "wb") as file:
        pickle.dump(_Payload(str(marker)), file)
    hostile = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "3", "--load_epoch", "2", "--prefix", prefix, font)
    _one_line(hostile, "ocr-0002.states", "never loaded")
    assert not marker.exists()
    with open(checkpoint.states_path(prefix, 2), "wb") as file:
        file.write(files[checkpoint.states_path(prefix, 2)][:100])  # truncated
    _one_line(run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "3", "--load_epoch", "2", "--prefix", prefix,
                         font), "ocr-0002.states")

    with open(f"{prefix}-history.json", "w") as file:
        file.write('[{"epoch": "one"}]')
    _one_line(run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "3", "--load_epoch", "1", "--prefix", prefix,
                         font), "ocr-history.json is not a valid training history")

    stale = f"{prefix}-0003.params.tmp{_dead_pid()}"
    open(stale, "w").write("half-written by a killed run")
    replaced = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "1", "--network", "unrolled", "--overwrite",
                          "--prefix", prefix, font)
    assert replaced.returncode == 0, replaced.stderr
    assert f"Removed {stale}" in replaced.stderr and not os.path.exists(stale)
    assert checkpoint.saved_epochs(prefix) == [1] and not os.path.exists(checkpoint.states_path(prefix, 2))
    symbol, arg_params, _ = checkpoint.load(prefix, 1)
    assert "l0_i2h_weight" in arg_params  # the unrolled run's files, not a mix of two runs


def _dead_pid() -> int:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    return pid


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_training_stops_fast_leaves_no_process_and_keeps_checkpoints(font, tmp_path, trainer, sig):
    prefix = str(tmp_path / "ocr")
    run = trainer(*TINY, *SLOW_EPOCHS, "--keep_epochs", "0", "--prefix", prefix, font)
    run.wait_for('Saved checkpoint to "' + prefix + '-0001.params"')
    workers = children_of(run.proc.pid)
    assert len(workers) >= 2
    run.wait_for("Epoch[2] Batch")
    if sig == signal.SIGINT:  # a second trainer on the same prefix, even with --overwrite, is refused
        second = run_script("lstm_ocr_train.py", *TINY, "--overwrite", "--prefix", prefix, font)
        assert second.returncode == 2 and f"in use by a running trainer (pid {run.proc.pid})" in second.stderr
    sent = time.monotonic()
    run.proc.send_signal(sig)
    assert run.finish() == 130
    assert time.monotonic() - sent < 10
    last = checkpoint.saved_epochs(prefix)[-1]
    assert f"stopped by {sig.name}; last checkpoint: {checkpoint.params_path(prefix, last)}" in run.log
    assert "Traceback" not in run.log
    assert_all_exit(workers)
    checkpoint.load(prefix, 1)


def test_a_signal_during_start_up_stops_cleanly(font, tmp_path, trainer):
    run = trainer(*TINY, *SLOW_EPOCHS, "--eval_epoch_size", "6400", "--prefix", str(tmp_path / "ocr"), font)
    run.wait_for("Generating")
    workers = children_of(run.proc.pid)
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 130
    assert "last checkpoint: none" in run.log and "Traceback" not in run.log
    assert_all_exit(workers)


def test_a_killed_generator_stops_the_run_with_an_error(font, tmp_path, trainer):
    run = trainer(*TINY, *SLOW_EPOCHS, "--prefix", str(tmp_path / "ocr"), font)
    run.wait_for("Epoch[1] Batch")
    workers = children_of(run.proc.pid)
    generators = [p for p in workers if b"spawn_main" in open(f"/proc/{p}/cmdline", "rb").read()
                  and b"resource_tracker" not in open(f"/proc/{p}/cmdline", "rb").read()]
    os.kill(generators[0], signal.SIGKILL)
    assert run.finish() == 1
    assert "error: data generator process" in run.log and "died" in run.log and "Traceback" not in run.log
    assert_all_exit(workers)


def test_killing_the_trainer_keeps_earlier_checkpoints_and_ends_its_workers(font, tmp_path, trainer):
    prefix = str(tmp_path / "ocr")
    run = trainer(*TINY, "--num_epoch", "50", "--keep_epochs", "0", "--prefix", prefix, font)
    run.wait_for('Saved checkpoint to "' + prefix + '-0002.params"')
    workers = children_of(run.proc.pid)
    time.sleep(0.3)  # somewhere in the next epoch or its checkpoint write
    run.proc.kill()
    run.proc.wait()
    for epoch in checkpoint.saved_epochs(prefix):
        checkpoint.load(prefix, epoch)
    assert checkpoint.saved_epochs(prefix)[:2] == [1, 2]
    assert_all_exit(workers)
