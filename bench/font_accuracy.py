"""Accuracy of a checkpoint on a test set per font, measured the user's way: `captcha_generator.py
--count N --seed S FONT DIR`, then `lstm_ocr_infer.py DIR`.

    .venv/bin/python bench/font_accuracy.py [--prefix pretrained/ocr --epoch N] [--count 1000] [--seed 1] [--keep DIR]

The example's noise is not seeded (the captcha package draws it with `secrets`): `--keep DIR` writes
each font's set once and reuses it, so that every model reads the very same files.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
from contextlib import nullcontext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import checkpoint  # noqa: E402


def run(*args: str) -> str:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", default="pretrained/ocr")
    parser.add_argument("--epoch", type=int, default=None, help="[default: the last saved]")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fonts", default="font")
    parser.add_argument("--keep", help="write the sets into this folder once, and read them from it ever after")
    args = parser.parse_args()
    epoch = args.epoch or checkpoint.saved_epochs(args.prefix)[-1]
    print(f"# {' '.join(sys.argv)}  ({checkpoint.params_path(args.prefix, epoch)}, {args.count} images a font)")
    accuracies = {}
    with nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory() as folder:
        os.makedirs(folder, exist_ok=True)
        for font in sorted(glob.glob(os.path.join(args.fonts, "*.ttf"))):
            name = os.path.basename(font)
            images = os.path.join(folder, name)
            if not os.path.isdir(images):
                run("captcha_generator.py", "--count", str(args.count), "--seed", str(args.seed), font, images)
            last = run("lstm_ocr_infer.py", "--prefix", args.prefix, "--epoch", str(epoch), images).splitlines()[-1]
            accuracies[name] = float(re.match(r"accuracy=([0-9.]+)", last).group(1))
            print(f"{name:24s} {last}", flush=True)
    worst = min(accuracies, key=accuracies.get)
    print(f"mean {sum(accuracies.values()) / len(accuracies):.4f}, {len(accuracies)} fonts: "
          f"{sum(a >= 0.98 for a in accuracies.values())} at 0.98 or more, "
          f"{sum(a >= 0.96 for a in accuracies.values())} at 0.96 or more; worst {worst} {accuracies[worst]:.4f}")

if __name__ == "__main__":
    main()
