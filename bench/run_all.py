"""Every benchmark in one run, each printed with the command that produced it.

    .venv/bin/python bench/run_all.py      (or: make bench)

Training-step speeds are measured under each thread setting, so that their ratio is what counts on a
shared machine: OMP_NUM_THREADS (MXNet's OpenMP pool) of 1 and 2.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = [
    ({}, ["bench/generation.py", "font/DroidSansMono.ttf"]),
    ({}, ["bench/generation.py", "--min_len", "3", "--max_len", "6", "font/"]),
    ({}, ["bench/train_step.py"]),
    ({"OMP_NUM_THREADS": "1"}, ["bench/train_step.py", "--networks", "fused", "--losses", "ctc"]),
    ({"OMP_NUM_THREADS": "2"}, ["bench/train_step.py", "--networks", "fused", "--losses", "ctc"]),
    ({}, ["bench/end_to_end.py"]),
    ({}, ["bench/end_to_end.py", "--recipe", "fast"]),
    ({}, ["bench/inference.py"]),
    ({}, ["bench/serve.py"]),
    ({}, ["bench/font_accuracy.py"]),
    ({}, ["bench/arithmetic_heldout.py"]),
]


def main() -> None:
    for env, args in RUNS:
        settings = " ".join(f"{k}={v}" for k, v in env.items())
        print(f"$ {settings} .venv/bin/python {' '.join(args)}".replace("$  ", "$ "), flush=True)
        subprocess.run([sys.executable, *args], cwd=ROOT, env={**os.environ, **env}, check=True)


if __name__ == "__main__":
    main()
