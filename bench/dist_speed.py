"""Training speed (samples/s) of one plain trainer, and of 1 and 2 distributed workers (dist_sync,
1 server) started by `python -m lstm_ocr.dist_launch` on this machine.

    .venv/bin/python bench/dist_speed.py [--samples 6400] [font/]

Each run trains one epoch of `--samples` samples per worker; a worker's speed is those samples over
its `Epoch[0] Time cost` (the pool is filled before the clock starts), and the total is the sum over
the workers. Wall time includes start-up, data generation and validation.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ["--num_epoch", "1", "--eval_epoch_size", "128", "--batch_size", "128", "--pool_size", "1024",
            "--num_proc", "1"]
TIME_COST = re.compile(r"(?:\[rank (\d+)\] )?Epoch\[0\] Time cost=([\d.]+)")


def run(command: list[str]) -> tuple[list[float], float]:
    """Each worker's epoch time cost and the wall time of `command`."""
    tic = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - tic
    if result.returncode:
        sys.exit(f"error: {' '.join(command)} failed:\n{result.stderr}")
    return [float(cost) for _, cost in TIME_COST.findall(result.stderr)], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("font_path", nargs="?", default=os.path.join(ROOT, "font"))
    parser.add_argument("--samples", type=int, default=6400, help="training samples per worker [default 6400]")
    args = parser.parse_args()
    print(f"# {' '.join(sys.argv)}  ({os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")
    with tempfile.TemporaryDirectory() as folder:
        trainer = [*SETTINGS, "--train_epoch_size", str(args.samples), "--prefix", os.path.join(folder, "ocr"),
                   args.font_path]
        runs = [("plain trainer", [sys.executable, "lstm_ocr_train.py", *trainer])]
        launcher = [sys.executable, "-m", "lstm_ocr.dist_launch"]
        runs += [(f"{n} worker{'s' * (n > 1)}, 1 server", [*launcher, "-n", str(n), "-s", "1", *trainer])
                 for n in (1, 2)]
        for name, command in runs:
            costs, wall = run(command)
            speeds = [args.samples / cost for cost in costs]
            print(f"{name:20s} {sum(speeds):8.1f} samples/s  (per worker: {', '.join(f'{s:.1f}' for s in speeds)}; "
                  f"wall {wall:.1f} s)", flush=True)
            print(f"    {' '.join(os.path.basename(c) if c == sys.executable else c for c in command)}", flush=True)


if __name__ == "__main__":
    main()
