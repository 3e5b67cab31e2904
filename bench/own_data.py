"""Your own captchas: fine-tune pretrained/ (and train from scratch) on a few hundred labelled images
of a look this project never trains on, wheezy-captcha's default look, and measure the result the
user's way: `lstm_ocr_train.py --train_dir DIR [--finetune pretrained/ocr:12]` with nothing else,
then `lstm_ocr_infer.py` on 1,000 held-out images of that look.

    .venv/bin/pip install -r requirements-bench.txt numpy==1.23.5     (wheezy.captcha, bench only)
    .venv/bin/python bench/own_data.py [--sizes 200 500 1000] [--modes finetune scratch] [--out DIR]

The N labelled images are all the user has: the trainer holds out its fixed 10 % of them for
validation (so it trains on 0.9 N). Training minutes are the trainer's own (PREFIX-history.json:
the time of the epochs, without start-up, decoding and validation); wall minutes are the whole
command's.
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import checkpoint  # noqa: E402

FONTS = ["font/DejaVuSansMono-Bold.ttf", "font/DejaVuSans-Bold.ttf"]  # wheezy's example names two bold fonts
DIGITS = "0123456789"
TEXT_LENGTH = 4  # wheezy's example draws 4 characters
PRETRAINED = "pretrained/ocr:12"


def wheezy_look(fonts: list[str]):
    """wheezy.captcha's default look, as its README draws it (background, warped, rotated and offset
    text, a curve, noise, smoothing; 200x75)."""
    from wheezy.captcha.image import background, captcha, curve, noise, offset, rotate, smooth, text, warp

    return captcha(drawings=[background(), text(fonts=fonts, drawings=[warp(), rotate(), offset()]),
                             curve(), noise(), smooth()])


def write_set(folder: str, count: int, seed: int) -> None:
    """`count` images NNNN_TEXT.png of random 4-digit texts (wheezy draws with `random`: seeded here)."""
    os.makedirs(folder)
    draw = wheezy_look([os.path.join(ROOT, font) for font in FONTS])
    random.seed(seed)
    for index in range(count):
        label = "".join(random.choice(DIGITS) for _ in range(TEXT_LENGTH))
        draw(label).save(os.path.join(folder, f"{index:04d}_{label}.png"))


def run(args: list[str]) -> tuple[str, float]:
    """Run a project script; its stdout and wall seconds (its stderr is shown if it fails)."""
    tic = time.monotonic()
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"failed: {' '.join(args)}\n{result.stderr[-3000:]}")
    return result.stdout, time.monotonic() - tic


def accuracy(prefix: str, epoch: int, test: str) -> str:
    out, _ = run(["lstm_ocr_infer.py", "--prefix", prefix, "--epoch", str(epoch), test])
    return out.splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--modes", nargs="+", default=["finetune", "scratch"], choices=("finetune", "scratch"))
    parser.add_argument("--test_count", type=int, default=1000)
    parser.add_argument("--out", help="keep the data and checkpoints here [default: a temporary folder]")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"# {' '.join(sys.argv)}  (load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{os.cpu_count()} cores)", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or scratch
        os.makedirs(out, exist_ok=True)
        test = os.path.join(out, "test")
        if not os.path.isdir(test):
            write_set(test, args.test_count, seed=1)
        base = accuracy("pretrained/ocr", 12, test)
        print(f"pretrained/ocr:12 as shipped, on {args.test_count} held-out images: {base}", flush=True)
        print("mode      labelled  epochs  samples  train min  wall min  held-out result", flush=True)
        for size in args.sizes:
            data = os.path.join(out, f"labelled{size}")
            if not os.path.isdir(data):
                write_set(data, size, seed=1000 + size)
            for mode in args.modes:
                prefix = os.path.join(out, f"{mode}{size}", "ocr")
                os.makedirs(os.path.dirname(prefix), exist_ok=True)
                command = ["lstm_ocr_train.py", "--train_dir", data, "--prefix", prefix, "--overwrite"]
                command += ["--finetune", PRETRAINED] if mode == "finetune" else []
                print(f"$ python {' '.join(command)}", flush=True)
                _, wall = run(command)
                epoch = checkpoint.saved_epochs(prefix)[-1]
                with open(f"{prefix}-history.json") as file:
                    last = json.load(file)[-1]
                result = accuracy(prefix, epoch, test)
                print(f"{mode:9s} {size:8d}  {epoch:6d}  {last['samples']:7d}  {last['seconds'] / 60:9.1f}  "
                      f"{wall / 60:8.1f}  {result}", flush=True)
                match = re.search(r"accuracy=([\d.]+)", result)
                if match is None:
                    sys.exit(f"no accuracy line from lstm_ocr_infer.py: {result}")
        load = os.getloadavg()
        print(f"# load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
