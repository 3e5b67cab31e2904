"""Folders of labelled captcha images: which file says which text.

A folder's labels come from a `labels.csv` or `labels.tsv` in it (`file,text` per line; a first line
`file,text` is a header) when there is one, else from each file's name: the text after the last `_`
of the stem, as `captcha_generator.py --count` writes `0042_4711.png`; a stem without `_` is the
label itself. Labels files are untrusted: their size is bounded and they may only name files inside
their folder.
"""

import csv
import os
import re

from PIL import Image

from cli import InputError
from hyperparameters import MAX_LABELS_BYTES

LABEL_FILES = {"labels.csv": ",", "labels.tsv": "\t"}
HEADER_WORDS = ({"file", "filename", "name", "path", "image"}, {"text", "label"})
GENERATED_NAME = re.compile(r"^\d+_(.+)$")  # NNNN_TEXT: the generator's labelled names


def image_extensions() -> set[str]:
    return set(Image.registered_extensions())


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in image_extensions()


def name_label(path: str) -> str:
    """The label a file name carries: the text after the last `_` of its stem, or the whole stem."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.rsplit("_", 1)[-1]


def generated_label(path: str) -> str | None:
    """The label of a name in the generator's form NNNN_TEXT, else None (`scan_2023.png` is no label)."""
    match = GENERATED_NAME.match(os.path.splitext(os.path.basename(path))[0])
    return match.group(1) if match else None


def labels_file(folder: str) -> str | None:
    """The labels file in `folder`, if it has one (two are ambiguous: InputError)."""
    found = [os.path.join(folder, name) for name in LABEL_FILES if os.path.isfile(os.path.join(folder, name))]
    if len(found) > 1:
        raise InputError(f"folder {folder} has both {' and '.join(map(os.path.basename, found))}; keep one")
    return found[0] if found else None


def _inside(folder: str, name: str, path: str, line: int) -> str:
    relative = os.path.normpath(name)
    if os.path.isabs(name) or relative.startswith(os.pardir) or relative in (".", ""):
        raise InputError(f"{path} line {line} names {name!r}, which is not a file inside {folder}")
    return os.path.join(folder, relative)


def read_labels_file(path: str) -> dict[str, str]:
    """{image path: text} from a labels file, each path checked to lie inside the file's folder."""
    size = os.path.getsize(path)
    if size > MAX_LABELS_BYTES:
        raise InputError(f"{path} is {size} bytes, over the limit of {MAX_LABELS_BYTES} for a labels file")
    folder = os.path.dirname(path)
    labels: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            for line, row in enumerate(csv.reader(file, delimiter=LABEL_FILES[os.path.basename(path)]), 1):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if line == 1 and len(row) == 2 and row[0].strip().lower() in HEADER_WORDS[0] \
                        and row[1].strip().lower() in HEADER_WORDS[1]:
                    continue
                if len(row) != 2 or not row[0].strip():
                    raise InputError(f"{path} line {line} is not `file{LABEL_FILES[os.path.basename(path)]}text`")
                image = _inside(folder, row[0].strip(), path, line)
                if image in labels:
                    raise InputError(f"{path} line {line} names {row[0].strip()!r} a second time")
                labels[image] = row[1].strip()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    except csv.Error as error:
        raise InputError(f"{path} is not a valid labels file: {error}") from None
    if not labels:
        raise InputError(f"{path} names no image")
    return labels
