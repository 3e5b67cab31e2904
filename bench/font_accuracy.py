"""Accuracy of a checkpoint on a test set per font, measured the user's way: `captcha_generator.py
--count N --seed S FONT DIR`, then `lstm_ocr_infer.py DIR`; with --ddddocr, ddddocr reads every set too.

    .venv/bin/python bench/font_accuracy.py [--prefix ocr --epoch N] [--count 1000] [--seed 1]
        [--keep DIR] [--ddddocr]

The example's noise is not seeded (the captcha package draws it with `secrets`): `--keep DIR` writes
each font's set once (DIR/FONT-nCOUNT-seedSEED) and reuses it, so that every model reads the very same files.
"""

import argparse
import glob
import os
import re
import sys
import tempfile
from contextlib import nullcontext

from lstm_ocr import checkpoint, models
from readers import ddddocr_accuracy, kept_set, run  # also puts the repository root on sys.path


def summary(reader: str, accuracies: dict[str, float]) -> str:
    """One line: the mean over the fonts, how many reach 0.98 and 0.96, and the worst font."""
    worst = min(accuracies, key=accuracies.get)
    return (f"{reader}: mean {sum(accuracies.values()) / len(accuracies):.4f}, {len(accuracies)} fonts: "
            f"{sum(a >= 0.98 for a in accuracies.values())} at 0.98 or more, "
            f"{sum(a >= 0.96 for a in accuracies.values())} at 0.96 or more; worst {worst} {accuracies[worst]:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="ocr")
    parser.add_argument("--epoch", type=int, default=None, help="[default: the last saved]")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fonts", default="font")
    parser.add_argument("--keep", help="write the sets into this folder once (DIR/FONT-nCOUNT-seedSEED), and read "
                        "them from it in every later run of the same --count and --seed")
    parser.add_argument("--ddddocr", action="store_true", help="also read every set with ddddocr")
    args = parser.parse_args()
    args.prefix = models.resolve(args.prefix)  # a checkpoint, or a shipped model's name
    epoch = args.epoch or checkpoint.saved_epochs(args.prefix)[-1]
    print(f"# {' '.join(sys.argv)}  ({checkpoint.params_path(args.prefix, epoch)}, {args.count} images a font)")
    ours: dict[str, float] = {}
    theirs: dict[str, float] = {}
    with nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory() as folder:
        os.makedirs(folder, exist_ok=True)
        for font in sorted(glob.glob(os.path.join(args.fonts, "*.ttf"))):
            name = os.path.basename(font)
            images = kept_set(folder, name, n=args.count, seed=args.seed)
            if not os.path.isdir(images):
                run("captcha_generator.py", "--count", str(args.count), "--seed", str(args.seed), font, images)
            last = run("lstm_ocr_infer.py", "--prefix", args.prefix, "--epoch", str(epoch), images).splitlines()[-1]
            ours[name] = float(re.match(r"accuracy=([0-9.]+)", last).group(1))
            print(f"{name:24s} {last}", flush=True)
            if args.ddddocr:
                theirs[name], count = ddddocr_accuracy(images)
                print(f"{name:24s} ddddocr accuracy={theirs[name]:.4f} images={count}", flush=True)
    print(summary(os.path.basename(args.prefix), ours))
    if theirs:
        print(summary("ddddocr", theirs))


if __name__ == "__main__":
    main()
