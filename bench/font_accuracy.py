"""Accuracy of a checkpoint on a test set per font, measured the user's way: `captcha_generator.py
--count N --seed S FONT DIR`, then `lstm_ocr_infer.py DIR`.

    .venv/bin/python bench/font_accuracy.py [--prefix pretrained/ocr --epoch N] [--count 1000] [--seed 1]
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile

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
    args = parser.parse_args()
    epoch = args.epoch or checkpoint.saved_epochs(args.prefix)[-1]
    print(f"# {' '.join(sys.argv)}  ({checkpoint.params_path(args.prefix, epoch)}, {args.count} images a font)")
    with tempfile.TemporaryDirectory() as folder:
        for font in sorted(glob.glob(os.path.join(args.fonts, "*.ttf"))):
            images = os.path.join(folder, os.path.basename(font))
            run("captcha_generator.py", "--count", str(args.count), "--seed", str(args.seed), font, images)
            last = run("lstm_ocr_infer.py", "--prefix", args.prefix, "--epoch", str(epoch), images).splitlines()[-1]
            print(f"{os.path.basename(font):24s} {last}", flush=True)


if __name__ == "__main__":
    main()
