"""The trainer's life cycle as a user meets it: resume, signals at any moment, dead workers, kills."""

import os
import selectors
import signal
import subprocess
import time

import pytest

import checkpoint
from conftest import PYTHON, ROOT, assert_all_exit, children_of, run_script

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
    assert "Epoch[0]" not in resumed.stderr and "Epoch[1] Validation-accuracy=" in resumed.stderr
    assert checkpoint.saved_epochs(prefix) == [1, 2]
    wrong = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "3", "--load_epoch", "2", "--network", "unrolled",
                       "--prefix", prefix, font)
    assert wrong.returncode == 2 and "resume with --network fused" in wrong.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_training_stops_fast_leaves_no_process_and_keeps_checkpoints(font, tmp_path, trainer, sig):
    prefix = str(tmp_path / "ocr")
    run = trainer(*TINY, *SLOW_EPOCHS, "--prefix", prefix, font)
    run.wait_for('Saved checkpoint to "' + prefix + '-0001.params"')
    workers = children_of(run.proc.pid)
    assert len(workers) >= 2
    run.wait_for("Epoch[1] Batch")
    sent = time.monotonic()
    run.proc.send_signal(sig)
    assert run.finish() == 130
    assert time.monotonic() - sent < 10
    assert f"stopped by {sig.name}; last checkpoint: {prefix}-0001.params" in run.log
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
    run.wait_for("Epoch[0] Batch")
    workers = children_of(run.proc.pid)
    generators = [p for p in workers if b"spawn_main" in open(f"/proc/{p}/cmdline", "rb").read()
                  and b"resource_tracker" not in open(f"/proc/{p}/cmdline", "rb").read()]
    os.kill(generators[0], signal.SIGKILL)
    assert run.finish() == 1
    assert "error: data generator process" in run.log and "died" in run.log and "Traceback" not in run.log
    assert_all_exit(workers)


def test_killing_the_trainer_keeps_earlier_checkpoints_and_ends_its_workers(font, tmp_path, trainer):
    prefix = str(tmp_path / "ocr")
    run = trainer(*TINY, "--num_epoch", "50", "--prefix", prefix, font)
    run.wait_for('Saved checkpoint to "' + prefix + '-0002.params"')
    workers = children_of(run.proc.pid)
    time.sleep(0.3)  # somewhere in the next epoch or its checkpoint write
    run.proc.kill()
    run.proc.wait()
    for epoch in checkpoint.saved_epochs(prefix):
        checkpoint.load(prefix, epoch)
    assert checkpoint.saved_epochs(prefix)[:2] == [1, 2]
    assert_all_exit(workers)
