"""Learning a look from unlabelled images: `lstm_ocr_train.py --unlabelled_dir` run as a user runs it,
on a look the starting model never trained on, and measured on labelled images of the look it never
sees (`--val_dir`: logged each round beside the estimate, never trained on).

    .venv/bin/pip install -r requirements-bench.txt numpy==1.23.5     (wheezy.captcha, bench only)
    .venv/bin/python bench/unlabelled.py --look letters [--count 2000] [--test_count 500] [--out DIR]
        [-- TRAINING OPTIONS...]

Looks (drawn by bench/heldout.py's wheezy drawing, never by anything the project trains on):
- letters: wheezy-captcha's default look (LiberationMono-Bold, 200x75), 4-5 of 0-9a-z, from `alnum`;
- digits: the same look on a small canvas (120x45), 4 digits, from `general` with `--length 4`.

The unlabelled folder holds NNNN.jpg files only (their texts are kept aside, in truth.csv, to score each
round's trusted readings afterwards: how many of the labels the rounds trained on were right). It prints
the command, every round's log line, the wall seconds of the whole command and of the rounds' training
(the sum of each round's PREFIX-roundK-history.json), and the chosen model's reading of the test set.
"""

import argparse
import csv
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from heldout import WHEEZY_FONT, WHEEZY_SIZE, WHEEZY_SMALL, write_wheezy

from readers import ROOT, kept_set, print_footer, print_header

ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"
# look: (characters, shortest, longest, canvas, start, options the user gives for the look)
LOOKS = {"letters": (ALNUM, 4, 5, WHEEZY_SIZE, "alnum", []),
         "digits": ("0123456789", 4, 4, WHEEZY_SMALL, "general", ["--length", "4"])}
UNLABELLED_SEED, TEST_SEED = 3201, 3202  # neither is a seed of bench/heldout.py's sets


def draw(folder: str, look: str, count: int, seed: int) -> None:
    """`count` labelled captchas NNNN_TEXT.jpg of the look, unless the folder exists already."""
    if not os.path.isdir(folder):
        chars, min_len, max_len, size = LOOKS[look][:4]
        write_wheezy(folder, count, seed, min_len, max_len, os.path.join(ROOT, WHEEZY_FONT), chars, size)


def strip_labels(labelled: str, folder: str) -> None:
    """Copies of `labelled`'s images without their texts (NNNN.jpg), the texts kept in truth.csv beside."""
    if os.path.isdir(folder):
        return
    os.makedirs(folder)
    with open(f"{folder}-truth.csv", "w", newline="") as file:
        writer = csv.writer(file)
        for name in sorted(os.listdir(labelled)):
            number, text = os.path.splitext(name)[0].split("_", 1)
            shutil.copyfile(os.path.join(labelled, name), os.path.join(folder, f"{number}.jpg"))
            writer.writerow((f"{number}.jpg", text))


def trusted_precision(prefix: str, unlabelled: str) -> list[str]:
    """For each round's work folder: how many of its labels were right (its images are copies, matched by
    content to the unlabelled folder's files)."""
    with open(f"{unlabelled}-truth.csv", newline="") as file:
        truth = {name: text for name, text in csv.reader(file)}
    by_content = {}
    for name in truth:
        with open(os.path.join(unlabelled, name), "rb") as file:
            by_content[file.read()] = truth[name]
    lines = []
    for work in sorted(glob.glob(f"{prefix}-unlabelled/round*"), key=lambda path: int(path.rsplit("round", 1)[1])):
        with open(os.path.join(work, "labels.csv"), newline="") as file:
            rows = list(csv.reader(file))[1:]
        right = 0
        for name, text in rows:
            with open(os.path.join(work, name), "rb") as image:
                right += by_content.get(image.read()) == text
        lines.append(f"{os.path.basename(work)}: {right} of {len(rows)} trusted readings right "
                     f"({right / max(len(rows), 1):.3f})")
    return lines


def training_seconds(prefix: str) -> float:
    """The rounds' training time: the seconds of each round's last history record."""
    total = 0.0
    for path in glob.glob(f"{prefix}-round*-history.json"):
        with open(path) as file:
            total += json.load(file)[-1]["seconds"]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--look", choices=tuple(LOOKS), default="letters")
    parser.add_argument("--count", type=int, default=2000, help="unlabelled images")
    parser.add_argument("--test_count", type=int, default=500, help="labelled images measured on (--val_dir)")
    parser.add_argument("--start", help="--finetune of the run [default: the look's shipped start]")
    parser.add_argument("--out", help="keep the data and checkpoints here [default: a temporary folder]")
    parser.add_argument("training", nargs="*", help="options after -- go to lstm_ocr_train.py")
    args = parser.parse_args()
    chars, _, _, _, start, options = LOOKS[args.look]
    print_header()
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.abspath(args.out or scratch)
        os.makedirs(out, exist_ok=True)
        labelled = kept_set(out, f"{args.look}-labelled", n=args.count, seed=UNLABELLED_SEED)
        test = kept_set(out, f"{args.look}-test", n=args.test_count, seed=TEST_SEED)
        unlabelled = kept_set(out, f"{args.look}-unlabelled", n=args.count, seed=UNLABELLED_SEED)
        draw(labelled, args.look, args.count, UNLABELLED_SEED)
        draw(test, args.look, args.test_count, TEST_SEED)
        strip_labels(labelled, unlabelled)
        prefix = os.path.join(out, f"{args.look}-run", "ocr")
        command = ["lstm_ocr_train.py", "--unlabelled_dir", unlabelled, "--finetune", args.start or start,
                   *options, "--val_dir", test, "--prefix", prefix, "--overwrite", *args.training]
        print(f"$ python {' '.join(command)}", flush=True)
        tic = time.monotonic()
        result = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - tic
        for line in result.stderr.splitlines():
            if re.search(r"Round \d+:|stopping|error:", line):
                print(line.split(" ", 2)[-1] if re.match(r"\d{4}-", line) else line, flush=True)
        print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "(no reading command)")
        if result.returncode:
            sys.exit(f"failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
        for line in trusted_precision(prefix, unlabelled):
            print(line)
        print(f"wall {wall:.0f} s, of which training {training_seconds(prefix):.0f} s (the rounds' epochs)")
        read = re.search(r"--prefix (\S+)(?: --epoch (\d+))?", result.stdout.strip().splitlines()[-1])
        reading = subprocess.run([sys.executable, "lstm_ocr_infer.py", "--prefix", read.group(1),
                                  *(["--epoch", read.group(2)] if read.group(2) else []), *options, test],
                                 cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        print(f"chosen model on the {args.test_count} test images: {reading}")
        print_footer()


if __name__ == "__main__":
    main()
