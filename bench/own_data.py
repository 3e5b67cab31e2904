"""Your own captchas: fine-tune a shipped model (or train from scratch) on a few hundred labelled
images of a look this project never trains on, wheezy-captcha's default look, and measure the result
the user's way: `lstm_ocr_train.py --train_dir DIR [--finetune PREFIX:EPOCH] [--synthetic F font/]`,
then `lstm_ocr_infer.py` on 1,000 held-out images of that look, and on 1,000 of the example's look
(the look the shipped models read at 0.99: does fine-tuning keep it readable?).

    .venv/bin/pip install -r requirements-bench.txt numpy==1.23.5     (wheezy.captcha, bench only)
    .venv/bin/python bench/own_data.py [--sizes 200 500 1000] [--starts ocr:12 scratch]
        [--synthetic 0 0.3] [--out DIR]

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

from lstm_ocr import checkpoint, models  # noqa: E402

FONTS = ["font/DejaVuSansMono-Bold.ttf", "font/DejaVuSans-Bold.ttf"]  # wheezy's example names two bold fonts
DIGITS = "0123456789"
TEXT_LENGTH = 4  # wheezy's example draws 4 characters
STARTS = ["ocr:12", "scratch"]


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
    line = out.splitlines()[-1]
    match = re.match(r"accuracy=([\d.]+)", line)
    if match is None:
        sys.exit(f"no accuracy line from lstm_ocr_infer.py: {line}")
    return match.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--starts", nargs="+", default=STARTS, help="PREFIX:EPOCH to fine-tune from, or scratch")
    parser.add_argument("--synthetic", type=float, nargs="+", default=[0.0],
                        help="fractions of generated captchas (--synthetic F font/, the start's style) mixed in")
    parser.add_argument("--test_count", type=int, default=1000)
    parser.add_argument("--out", help="keep the data and checkpoints here [default: a temporary folder]")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"# {' '.join(sys.argv)}  (load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{os.cpu_count()} cores)", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or scratch
        os.makedirs(out, exist_ok=True)
        test, original = os.path.join(out, "test"), os.path.join(out, f"example-n{args.test_count}")
        if not os.path.isdir(test):
            write_set(test, args.test_count, seed=1)
        if not os.path.isdir(original):
            run(["captcha_generator.py", "--count", str(args.test_count), "--seed", "1", "font/", original])
        for start in args.starts:
            if start != "scratch":
                prefix, epoch = start.rsplit(":", 1)
                print(f"{start} as shipped: wheezy {accuracy(prefix, int(epoch), test)}, "
                      f"example look {accuracy(prefix, int(epoch), original)}", flush=True)
        print("start                 synthetic  labelled  epochs  samples  train min  wall min  wheezy  example",
              flush=True)
        for size in args.sizes:
            data = os.path.join(out, f"labelled{size}")
            if not os.path.isdir(data):
                write_set(data, size, seed=1000 + size)
            for start in args.starts:
                for synthetic in args.synthetic:
                    name = f"{start.replace('/', '_').replace(':', '-')}-s{synthetic:g}-{size}"
                    prefix = os.path.join(out, name, "ocr")
                    command = ["lstm_ocr_train.py", "--train_dir", data, "--prefix", prefix, "--overwrite"]
                    command += ["--finetune", start] if start != "scratch" else []
                    command += ["--synthetic", f"{synthetic:g}", "font/"] if synthetic else []
                    if synthetic and start != "scratch":  # draw in the look the start was trained on
                        with open(checkpoint.meta_path(models.resolve(start.rsplit(":", 1)[0]))) as file:
                            style = json.load(file).get("options", {}).get("style")
                        command += ["--style", style] if style else []
                    print(f"$ python {' '.join(command)}", flush=True)
                    _, wall = run(command)
                    epoch = checkpoint.saved_epochs(prefix)[-1]
                    with open(f"{prefix}-history.json") as file:
                        last = json.load(file)[-1]
                    print(f"{start:21s} {synthetic:9g}  {size:8d}  {epoch:6d}  {last['samples']:7d}  "
                          f"{last['seconds'] / 60:9.1f}  {wall / 60:8.1f}  {accuracy(prefix, epoch, test):6s}  "
                          f"{accuracy(prefix, epoch, original)}", flush=True)
        load = os.getloadavg()
        print(f"# load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
