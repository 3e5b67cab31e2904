"""What the accuracy benches share: running this project's scripts as a user does, the folder a
kept held-out set lives in, and ddddocr's reading of a folder of labelled captchas (NNNN_DIGITS.png
or .jpg, as captcha_generator.py and heldout.py write them; letters too)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lstm_ocr.labelled_data import generated_label, is_image_name  # noqa: E402


def run(*args: str) -> str:
    """The standard output of `python SCRIPT ARGS...` run from the repository root (raises on failure)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def print_header() -> None:
    """A bench's first line: its command line, the load average at its start and the cores."""
    load = os.getloadavg()
    print(f"# {' '.join(sys.argv)}  (load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{os.cpu_count()} cores)", flush=True)


def print_footer() -> None:
    """A bench's last line: the load average at its end."""
    load = os.getloadavg()
    print(f"# load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def chosen_sets(parser, text: str, choices: tuple[str, ...]) -> list[str]:
    """The comma-separated `--sets` value as a list, or the parser's error naming the unknown ones."""
    sets = text.split(",")
    unknown = sorted(set(sets) - set(choices))
    if unknown:
        parser.error(f"unknown sets {unknown}; choose from {', '.join(choices)}")
    return sets


def kept_set(base: str, name: str, **drawn_with: object) -> str:
    """The folder of set `name` drawn with these settings (count, seed, lengths) under `base`: the
    settings are part of its name, so that a kept set is reused only by a run that asks for the same."""
    return os.path.join(base, "-".join([name, *(f"{key}{value}" for key, value in drawn_with.items())]))


def ddddocr_accuracy(folder: str, fold_case: bool = False) -> tuple[float, int]:
    """ddddocr's sequence accuracy on a folder of labelled captchas, and how many it read: its plain
    `classification(image bytes)`, as a user calls it, compared with the label exactly (or, with
    `fold_case`, both in lower case: ddddocr's letter case is not what it reads best)."""
    import ddddocr  # bench-only (requirements-bench.txt)

    ocr = ddddocr.DdddOcr(show_ad=False)
    names = sorted(name for name in os.listdir(folder) if is_image_name(name))
    right = 0
    for name in names:
        with open(os.path.join(folder, name), "rb") as file:
            read, label = ocr.classification(file.read()), generated_label(name)
        right += read.lower() == label.lower() if fold_case else read == label
    return right / len(names), len(names)
