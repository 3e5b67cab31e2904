"""The letters model's training speed, end to end: today's command (the shipped `alnum`'s, wide front
end, 2 generator processes and a pool) against the new one (`--recipe letters`: the same network with
the ReLU as an MKL-DNN `Activation`, captchas from a store drawn once; `--crnn_shape compact` for the
compact front end), each a real `lstm_ocr_train.py` run of one short epoch,
interleaved A, B, A, B in one run; then, given the prefixes of two longer runs, their validation
accuracy after the same numbers of samples.

    .venv/bin/python bench/letters_speed.py [--rounds 2] [--samples 4800] [--store_count 4096] [FONT_PATH]
    .venv/bin/python bench/letters_speed.py --runs PREFIX_A PREFIX_B   (accuracy per sample seen only)

Samples/s is the trainer's epoch (`Epoch[1] Time cost`: every batch, the data path included, from
the first batch to the last); `wall` adds the start-up (importing MXNet, the workers drawing the
validation set and, for today's command, filling the pool). The store is drawn once, before the
rounds, and its drawing speed is printed apart: it is paid once for every run that reuses it.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"
# docs/letters-model.md's command, less its epochs and prefix
TODAY = ["--recipe", "fast", "--style", "varied", "--fit", "pad", "--chars", ALNUM, "--case", "fold", "--min_len", "3",
         "--max_len", "6", "--crnn_blocks", "3", "--crnn_first_channels", "16", "--seq_length", "96",
         "--image_height", "36", "--num_hidden", "200", "--lr_schedule", "cosine"]
NEW = ["--recipe", "letters", "--style", "varied"]


def train(args: list[str], prefix: str, samples: int, font_path: str) -> tuple[float, float]:
    """(samples/s of the epoch, wall seconds of the whole command) of a one-epoch run."""
    command = [sys.executable, os.path.join(ROOT, "lstm_ocr_train.py"), *args, "--num_epoch", "1",
               "--train_epoch_size", str(samples), "--eval_epoch_size", "128", "--seed", "7", "--prefix", prefix,
               font_path]
    tic = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - tic
    if result.returncode:
        sys.exit(f"error: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    cost = float(re.search(r"Epoch\[1\] Time cost=([0-9.]+)", result.stderr).group(1))
    return samples / cost, wall


def speed(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = os.path.join(folder, "store")
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lstm_ocr.captcha_store", "--recipe", "letters", "--style",
                        "varied", "--count", str(args.store_count), "--seed", "99", "--out", store, args.font_path],
                       check=True, capture_output=True, cwd=ROOT)
        drawn = time.perf_counter() - tic
        print(f"store: {args.store_count} captchas drawn once in {drawn:.0f} s "
              f"({args.store_count / drawn:.0f} a second, start-up included)", flush=True)
        runs = {"today (wide, 2 workers + pool)": TODAY,
                f"new ({args.crnn_shape}, --store)": NEW + ["--crnn_shape", args.crnn_shape, "--store", store]}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for round_number in range(args.rounds):
            for i, (name, options) in enumerate(runs.items()):
                rate, wall = train(options, os.path.join(folder, f"run{round_number}{i}", "m"), args.samples,
                                   args.font_path)
                results[name].append((rate, wall))
                print(f"round {round_number + 1}  {name:34s} {rate:7.1f} samples/s  (wall {wall:5.1f} s, load "
                      f"{os.getloadavg()[0]:.1f})", flush=True)
    means = {name: sum(rate for rate, _ in rows) / len(rows) for name, rows in results.items()}
    walls = {name: sum(wall for _, wall in rows) / len(rows) for name, rows in results.items()}
    (old, old_rate), (new, new_rate) = means.items()
    pairs = [b[0] / a[0] for a, b in zip(*results.values(), strict=True)]
    print(f"mean: today {old_rate:.1f}, new {new_rate:.1f} samples/s; ratio {new_rate / old_rate:.2f} "
          f"(per round {', '.join(f'{p:.2f}' for p in pairs)}); wall of a {args.samples}-sample run "
          f"{walls[old]:.0f} s against {walls[new]:.0f} s")


def accuracy(prefixes: list[str]) -> None:
    """Validation accuracy of two runs after the same numbers of samples (their history files)."""
    from lstm_ocr import curves as training_curves

    histories = [training_curves.load(prefix, 10 ** 6) for prefix in prefixes]
    print(f"{'samples':>8s}  " + "  ".join(f"{p:>28s}" for p in prefixes))
    for rows in zip(*histories, strict=False):
        if len({row.samples for row in rows}) != 1:
            break
        print(f"{rows[0].samples:8d}  " + "  ".join(f"{row.val_accuracy:28.4f}" for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("font_path", nargs="?", default="font")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4800, help="samples of each timed epoch")
    parser.add_argument("--store_count", type=int, default=4096)
    parser.add_argument("--crnn_shape", choices=("wide", "compact"), default="wide",
                        help="the new command's front end [default wide, --recipe letters's]")
    parser.add_argument("--runs", nargs=2, metavar=("PREFIX_A", "PREFIX_B"),
                        help="print the validation accuracy of two runs per samples seen, and nothing else")
    args = parser.parse_args()
    print(f"# bench/letters_speed.py {' '.join(sys.argv[1:])}  (load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} cores)", flush=True)
    if args.runs:
        accuracy(args.runs)
    else:
        speed(args)


if __name__ == "__main__":
    main()
