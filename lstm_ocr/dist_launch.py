"""Distributed training on this machine, the MXNet way: a scheduler, S servers and W workers of
lstm_ocr_train.py, all on 127.0.0.1, each given the DMLC_* environment MXNet's kvstore reads.

    python dist_launch.py -n 2 -s 1 font/ --num_epoch 10

Every argument it does not know goes to lstm_ocr_train.py, after `--kv_store dist_sync` (so
`--kv_store dist_async` overrides it). It waits for the workers, then for the servers and the
scheduler. The first process to fail, Ctrl-C or SIGTERM stops every process it started: each runs in
its own process group, so a worker's data generators go with it, and each is killed if the launcher
itself is killed. The exit code is the failed process's (130 after a signal). Workers are numbered
in start order; MXNet assigns their ranks.
"""

from lstm_ocr import venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)

# isort: split

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

from lstm_ocr.cli import ArgumentParser, InputError, Interrupted, check_count, exit_with, stop_on_signals

HOST = "127.0.0.1"
POLL_SECONDS = 0.2
STOP_SECONDS = 5  # a process still running this long after SIGTERM gets SIGKILL
EXIT_SECONDS = 30  # servers and scheduler must finish this soon after the last worker
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
MAX_PROCESSES = 4 * (os.cpu_count() or 1)  # more workers or servers than this only thrash the machine


class ProcessFailed(Exception):
    """A started process failed; args: (what happened, the code to exit with)."""


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("-n", "--num_workers", type=int, default=2, help="workers [default 2]")
    parser.add_argument("-s", "--num_servers", type=int, default=1, help="parameter servers [default 1]")
    args, trainer_args = parser.parse_known_args(argv)
    check_count("num_workers", args.num_workers, MAX_PROCESSES)
    check_count("num_servers", args.num_servers, MAX_PROCESSES)
    return args, trainer_args


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start(name: str, command: list[str], env: dict) -> tuple[str, subprocess.Popen]:
    """Start `command` in its own process group, to be SIGKILLed if the launcher dies (even by SIGKILL)."""
    parent, prctl = os.getpid(), ctypes.CDLL(None, use_errno=True).prctl

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return name, subprocess.Popen(command, env=env, process_group=0, preexec_fn=die_with_parent)


def exit_code(returncode: int) -> int:
    """A child's return code as a shell reports it (128 + N when killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def wait_for(done: list[tuple[str, subprocess.Popen]], started: list[tuple[str, subprocess.Popen]],
             deadline: float | None = None) -> bool:
    """Wait until every process in `done` has exited 0 (True) or `deadline` has passed (False); raise
    ProcessFailed as soon as any `started` process exits non-zero."""
    while deadline is None or time.monotonic() < deadline:
        for name, process in started:
            if process.poll():
                code = exit_code(process.returncode)
                raise ProcessFailed(f"{name} exited with code {code}", code)
        if all(process.returncode == 0 for _, process in done):
            return True
        time.sleep(POLL_SECONDS)
    return False


def stop(started: list[tuple[str, subprocess.Popen]]) -> None:
    """SIGTERM the workers, then the servers and scheduler (so workers can leave the kvstore together),
    then SIGKILL every process group, which also ends any data generator a worker left behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stopping short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    workers = [p for p in started if is_worker(p)]
    for group in (workers, [p for p in started if not is_worker(p)]):
        for _, process in group:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for _, process in group:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for _, process in started:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def is_worker(started: tuple[str, subprocess.Popen]) -> bool:
    return started[0].startswith("worker")


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def launch(num_workers: int, num_servers: int, trainer_args: list[str]) -> None:
    """Start everything, wait for it, and stop whatever still runs on any way out."""
    env = os.environ | {"DMLC_PS_ROOT_URI": HOST, "DMLC_PS_ROOT_PORT": str(free_port()), "DMLC_NODE_HOST": HOST,
                        "DMLC_NUM_SERVER": str(num_servers), "DMLC_NUM_WORKER": str(num_workers)}
    node = [sys.executable, "-c", "import mxnet"]  # under DMLC_ROLE=scheduler or server, runs that role
    trainer = [sys.executable, "-m", "lstm_ocr.train", "--kv_store", "dist_sync", *trainer_args]
    started: list[tuple[str, subprocess.Popen]] = []
    try:
        started.append(start("scheduler", node, env | {"DMLC_ROLE": "scheduler"}))
        started += [start(f"server {i}", node, env | {"DMLC_ROLE": "server"}) for i in range(num_servers)]
        started += [start(f"worker {i}", trainer, env | {"DMLC_ROLE": "worker"}) for i in range(num_workers)]
        wait_for([p for p in started if is_worker(p)], started)
        if not wait_for(started, started, time.monotonic() + EXIT_SECONDS):
            raise ProcessFailed(f"the servers and scheduler still ran {EXIT_SECONDS} s after the workers ended", 1)
    finally:
        stop(started)


def main(argv: list[str] | None = None) -> None:
    try:
        args, trainer_args = parse_args(argv)
    except InputError as error:
        exit_with(error)
    stop_on_signals()
    try:
        launch(args.num_workers, args.num_servers, trainer_args)
    except Interrupted as signal_name:
        sys.stderr.write(f"stopped by {signal_name}; stopped every process the launcher started\n")
        sys.exit(130)
    except ProcessFailed as failure:
        message, code = failure.args
        exit_with(f"{message}; stopped every process the launcher started", code=code)


if __name__ == "__main__":
    main()
