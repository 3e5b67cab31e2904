"""Your own captchas: fine-tune a shipped model (or train from scratch) on a few hundred labelled
images of a look this project never trains on, wheezy-captcha's default look (4 digits, or 4-5
digits and lowercase letters), and measure the result the user's way: `lstm_ocr_train.py
--train_dir DIR [--finetune PREFIX[:EPOCH]] [--synthetic F font/]`, then `lstm_ocr_infer.py` on 1,000
held-out images of that look, and (digits) on 1,000 of the example's look (the look the shipped
models read at 0.99: does fine-tuning keep it readable?).

    .venv/bin/pip install -r requirements-bench.txt numpy==1.23.5     (wheezy.captcha, bench only)
    .venv/bin/python bench/own_data.py [--looks digits letters] [--sizes 200 1000] [--starts look scratch]
        [--synthetic 0 0.3] [--code OLD_CHECKOUT .] [--out DIR]

`--starts look` fine-tunes the shipped start the README names for the look (digits: general,
letters: alnum); `auto` leaves the choice to the trainer (`--finetune auto`). `--code`
runs the trainer and reader of each checkout in turn, interleaved (an older commit's worktree
against this one: the same data, the same machine, minutes apart).

The N labelled images are all the user has: the trainer holds out its fixed 10 % of them for
validation (so it trains on 0.9 N). Training seconds are the trainer's own (PREFIX-history.json:
the time of the epochs, without start-up, decoding and validation); wall seconds are the whole
command's. The reading is of the epoch the trainer's last line names (`Read with: ... --epoch N`).
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
from readers import print_footer, print_header  # noqa: E402

FONTS = ["font/DejaVuSansMono-Bold.ttf", "font/DejaVuSans-Bold.ttf"]  # wheezy's example names two bold fonts
DIGITS = "0123456789"
ALNUM = DIGITS + "abcdefghijklmnopqrstuvwxyz"
# look: (characters, shortest and longest text, the README's start for it, the test set's seed)
LOOKS = {"digits": (DIGITS, 4, 4, "general", 1), "letters": (ALNUM, 4, 5, "alnum", 2)}


def wheezy_look(fonts: list[str]):
    """wheezy.captcha's default look, as its README draws it (background, warped, rotated and offset
    text, a curve, noise, smoothing; 200x75)."""
    from wheezy.captcha.image import background, captcha, curve, noise, offset, rotate, smooth, text, warp

    return captcha(drawings=[background(), text(fonts=fonts, drawings=[warp(), rotate(), offset()]),
                             curve(), noise(), smooth()])


def write_set(folder: str, count: int, seed: int, look: str = "digits") -> None:
    """`count` images NNNN_TEXT.png of random texts of the look (wheezy draws with `random`: seeded here)."""
    chars, min_len, max_len = LOOKS[look][:3]
    os.makedirs(folder)
    draw = wheezy_look([os.path.join(ROOT, font) for font in FONTS])
    random.seed(seed)
    for index in range(count):
        length = min_len if min_len == max_len else random.randint(min_len, max_len)
        label = "".join(random.choice(chars) for _ in range(length))
        draw(label).save(os.path.join(folder, f"{index:04d}_{label}.png"))


def run(args: list[str], code: str = ROOT) -> tuple[str, float]:
    """Run a script of checkout `code`; its stdout and wall seconds (its stderr is shown if it fails)."""
    tic = time.monotonic()
    result = subprocess.run([sys.executable, *args], cwd=code, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"failed: {' '.join(args)}\n{result.stderr[-3000:]}")
    return result.stdout, time.monotonic() - tic


def accuracy(prefix: str, epoch: int, test: str, code: str = ROOT) -> str:
    out, _ = run(["lstm_ocr_infer.py", "--prefix", prefix, "--epoch", str(epoch), test], code)
    line = next(line for line in reversed(out.splitlines()) if line.startswith("accuracy="))
    return re.match(r"accuracy=([\d.]+)", line).group(1)


def read_epoch(out: str, prefix: str) -> int:
    """The epoch the trainer's `Read with:` line names (the last one saved if it has none)."""
    match = re.search(r"^Read with: .* --epoch (\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else checkpoint.saved_epochs(prefix)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--looks", nargs="+", choices=tuple(LOOKS), default=list(LOOKS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--starts", nargs="+", default=["look"],
                        help="PREFIX[:EPOCH] to fine-tune from, look (the README's start for the look), auto "
                             "(--finetune auto), or scratch")
    parser.add_argument("--synthetic", type=float, nargs="+", default=[0.0],
                        help="fractions of generated captchas (--synthetic F font/, the start's style) mixed in")
    parser.add_argument("--code", nargs="+", default=[ROOT],
                        help="checkouts whose trainer and reader run, interleaved [default this one]")
    parser.add_argument("--test_count", type=int, default=1000)
    parser.add_argument("--out", help="keep the data and checkpoints here [default: a temporary folder]")
    args = parser.parse_args()
    codes = [os.path.abspath(code) for code in args.code]
    print_header()
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.abspath(args.out or scratch)
        os.makedirs(out, exist_ok=True)
        original = os.path.join(out, f"example-n{args.test_count}")
        if "digits" in args.looks and not os.path.isdir(original):
            run(["captcha_generator.py", "--count", str(args.test_count), "--seed", "1", "font/", original])
        print("look     code          start                 synthetic  labelled  epochs  read  samples  train s  "
              "wall s  look acc  example acc", flush=True)
        for look in args.looks:
            test = os.path.join(out, "test" if look == "digits" else f"test-{look}")
            if not os.path.isdir(test):
                write_set(test, args.test_count, LOOKS[look][4], look)
            for size in args.sizes:
                data = os.path.join(out, f"labelled{size}" if look == "digits" else f"labelled-{look}{size}")
                if not os.path.isdir(data):
                    write_set(data, size, 1000 + size if look == "digits" else 2000 + size, look)
                for start in args.starts:
                    start = LOOKS[look][3] if start == "look" else start
                    for synthetic in args.synthetic:
                        for code in codes:
                            measure(out, look, code, start, synthetic, size, data, test, original)
        print_footer()


def measure(out: str, look: str, code: str, start: str, synthetic: float, size: int, data: str, test: str,
            original: str) -> None:
    """One training run of checkout `code` on `data`, then its reading of the held-out sets: one table row."""
    tag = os.path.basename(code)
    name = f"{look}-{tag}-{start.replace('/', '_').replace(':', '-')}-s{synthetic:g}-{size}"
    prefix = os.path.join(out, name, "ocr")
    command = ["lstm_ocr_train.py", "--train_dir", data, "--prefix", prefix, "--overwrite"]
    command += ["--finetune", start] if start != "scratch" else []
    command += ["--synthetic", f"{synthetic:g}", "font/"] if synthetic else []
    if synthetic and start not in ("scratch", "auto"):  # draw in the look the start was trained on
        with open(checkpoint.meta_path(models.resolve(start.rsplit(":", 1)[0]))) as file:  # this checkout's models
            style = json.load(file).get("options", {}).get("style")
        command += ["--style", style] if style else []
    print(f"$ (cd {code} && python {' '.join(command)})", flush=True)
    stdout, wall = run(command, code)
    epoch = read_epoch(stdout, prefix)
    with open(f"{prefix}-history.json") as file:
        history = json.load(file)
    last = history[-1]
    example = accuracy(prefix, epoch, original, code) if look == "digits" else "-"
    held_out = accuracy(prefix, epoch, test, code)
    print(f"{look:8s} {tag[:12]:12s}  {start:21s} {synthetic:9g}  {size:8d}  {last['epoch']:6d}  {epoch:4d}  "
          f"{last['samples']:7d}  {last['seconds']:7.0f}  {wall:6.0f}  {held_out:8s}  {example}", flush=True)


if __name__ == "__main__":
    main()
