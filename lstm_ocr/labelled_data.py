"""Folders of labelled captcha images: which file says which text.

A folder's labels come from a `labels.csv` or `labels.tsv` in it (`file,text` per line; a first line
`file,text` is a header) when there is one, else from each file's name: the text after the last `_`
of the stem, as `captcha_generator.py --count` writes `0042_4711.png`; a stem without `_` is the
label itself. Labels files are untrusted: their size is bounded and they may only name files inside
their folder.
"""

import csv
import hashlib
import io
import os
import re
import stat

from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import MAX_IMAGE_BYTES, MAX_LABELS_BYTES
from lstm_ocr.images import allowed_extensions

LABELS_CSV = "labels.csv"  # the labels file this project writes (captcha_generator.py --count, the service)
LABEL_FILES = {LABELS_CSV: ",", "labels.tsv": "\t"}
HEADER = ("file", "text")  # the first line the project writes
HEADER_WORDS = ({"file", "filename", "name", "path", "image"}, {"text", "label"})
GENERATED_NAME = re.compile(r"^\d+_(.+)$")  # NNNN_TEXT: the generator's labelled names


def image_extensions() -> set[str]:
    """The extensions of the formats images.py opens (ICO, ICNS and the like are not images here)."""
    return allowed_extensions()


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in image_extensions()


def name_label(path: str) -> str:
    """The label a file name carries: in the generator's form NNNN_TEXT, all of TEXT (`_` included);
    else the text after the last `_` of its stem, or the whole stem."""
    found = generated_label(path)
    if found is not None:
        return found
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.rsplit("_", 1)[-1]


def generated_label(path: str) -> str | None:
    """The label of a name in the generator's form NNNN_TEXT, else None (`scan_2023.png` is no label)."""
    match = GENERATED_NAME.match(os.path.splitext(os.path.basename(path))[0])
    return match.group(1) if match else None


def labels_file(folder: str) -> str | None:
    """The labels file in `folder`, if it has one (two are ambiguous: InputError). One that is there but
    cannot be read (a dangling link, a FIFO, a folder) is InputError, never taken as absent: the file
    names would silently become the labels."""
    found = [os.path.join(folder, name) for name in LABEL_FILES if os.path.lexists(os.path.join(folder, name))]
    for path in found:
        check_labels_file(path)
    if len(found) > 1:
        raise InputError(f"folder {folder} has both {' and '.join(map(os.path.basename, found))}; keep one")
    return found[0] if found else None


def _inside(folder: str, name: str, path: str, line: int) -> str:
    relative = os.path.normpath(name)
    if os.path.isabs(name) or relative.startswith(os.pardir) or relative in (".", ""):
        raise InputError(f"{path} line {line} names {name!r}, which is not a file inside {folder}")
    return os.path.normpath(os.path.join(folder, relative))


def check_labels_file(path: str) -> int:
    """The size of a labels file that can be read: a regular file (through links), or InputError."""
    try:
        info = os.stat(path)
    except OSError as error:
        reason = "a link to nothing" if os.path.islink(path) else error.strerror
        raise InputError(f"labels file {path} cannot be read: {reason}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise InputError(f"labels file {path} is {kind}; it must be a file of `file,text` lines")
    return info.st_size


def label_field(text: str) -> str:
    """A label as a labels file's text field gives it back (surrounding spaces are a hand-written
    file's, not the label's)."""
    return text.strip()


def survives_labels_file(text: str, delimiter: str = ",") -> bool:
    """Whether `text` written into a labels file reads back exactly."""
    buffer = io.StringIO()
    try:
        csv.writer(buffer, delimiter=delimiter).writerow(["x", text])
        rows = list(csv.reader(io.StringIO(buffer.getvalue(), newline=""), delimiter=delimiter))
    except csv.Error:
        return False
    return len(rows) == 1 and len(rows[0]) == 2 and label_field(rows[0][1]) == text


def read_labels_file(path: str) -> dict[str, str]:
    """{image path (normalised): text} from a labels file, each path checked to lie inside the file's folder."""
    size = check_labels_file(path)
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
                labels[image] = label_field(row[1])
    except OSError as error:
        raise InputError(f"labels file {path} cannot be read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    except csv.Error as error:
        raise InputError(f"{path} is not a valid labels file: {error}") from None
    if not labels:
        raise InputError(f"{path} names no image")
    return labels


SHOWN = 5  # bad files a message names before it gives the count


def name_some(paths: list[str]) -> str:
    """The first few of `paths` and how many there are, for one error line."""
    shown = ", ".join(paths[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "") + f" ({len(paths)} in all)"


def folder_items(folder: str) -> list[tuple[str, str]]:
    """The (image path, text) pairs of a folder of labelled images, sorted by path: from its labels file
    (every file it names must exist) or else from the image files' names. InputError for a folder that
    does not exist, is empty, or has no labelled image."""
    if not os.path.isdir(folder):
        raise InputError(f"folder {folder} does not exist" if not os.path.exists(folder) else
                         f"{folder} is a file; give a folder of labelled images")
    try:
        names = os.listdir(folder)
    except OSError as error:
        raise InputError(f"cannot list folder {folder}: {error.strerror}") from None
    if not names:
        raise InputError(f"folder {folder} is empty: put labelled images in it (NNNN_TEXT.png, or a labels.csv)")
    found = labels_file(folder)
    if found is not None:
        labels = read_labels_file(found)
        missing = [path for path in labels if not os.path.isfile(path)]
        if missing:
            raise InputError(f"{found} names files that are not in {folder}: {name_some(sorted(missing))}")
        items = sorted(labels.items())
    else:
        images = sorted(os.path.join(folder, name) for name in names
                        if is_image_name(name) and os.path.isfile(os.path.join(folder, name)))
        if not images:
            raise InputError(f"folder {folder} has no image files (by extension: .png, .jpg, .gif, .bmp, .webp, "
                             ".tif, ...)")
        items = [(path, name_label(path)) for path in images]
    labelled = [(path, text) for path, text in items if text]
    if not labelled:
        raise InputError(f"folder {folder} has no labelled images: name them TEXT.png or NNNN_TEXT.png, or list "
                         "them in a labels.csv (file,text per line)")
    unlabelled = [path for path, text in items if not text]
    if unlabelled:
        raise InputError(f"images without a label in {folder}: {name_some(unlabelled)}")
    return labelled


def holdout_split(items: list[tuple[str, str]], fraction: float,
                  seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held out): a fixed `fraction` of the items (at least one), chosen by a seeded hash of each
    file's name, so the same folder always splits the same way and a file added later leaves the
    others on their side. Needs at least two items."""
    if len(items) < 2:
        raise InputError(f"{items[0][0] if items else 'the folder'} is the only labelled image: holding out "
                         f"{fraction:.0%} for validation needs at least 2 (or give --val_dir)")
    count = min(len(items) - 1, max(1, round(fraction * len(items))))

    def rank(item: tuple[str, str]) -> str:
        return hashlib.sha256(f"{seed}:{os.path.basename(item[0])}".encode()).hexdigest()

    held = set(sorted(items, key=rank)[:count])
    return [item for item in items if item not in held], [item for item in items if item in held]


def _digest(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read(MAX_IMAGE_BYTES + 1)).hexdigest()


def shared_files(train: list[str], val: list[str]) -> list[tuple[str, str]]:
    """(training file, validation file) pairs that are one file (through links) or hold the same bytes.
    Linear in the folders' size: only files of a size some validation file has are hashed, each once,
    and each validation file is one lookup in a dictionary keyed by size and digest."""
    pairs = []
    real = {os.path.realpath(path): path for path in train}
    sizes: dict[int, list[str]] = {}
    for path in train:
        sizes.setdefault(os.path.getsize(path), []).append(path)
    by_content: dict[tuple[int, str], str] = {}
    for path in val:
        if os.path.realpath(path) in real:
            pairs.append((real[os.path.realpath(path)], path))
            continue
        size = os.path.getsize(path)
        for candidate in sizes.pop(size, []):  # a size's training files are hashed the first time it is met
            by_content.setdefault((size, _digest(candidate)), candidate)
        found = by_content.get((size, _digest(path)))
        if found is not None:
            pairs.append((found, path))
    return pairs


def text_fields(texts: list[str]) -> tuple[str, int, int]:
    """The alphabet (sorted), shortest and longest length of a set of labels."""
    return "".join(sorted(set("".join(texts)))), min(map(len, texts)), max(map(len, texts))


def check_texts(items: list[tuple[str, str]], chars: str, most: int, why: str) -> None:
    """InputError naming the images whose label has characters outside `chars` or is longer than
    `most` characters (`why` says what limits it)."""
    alphabet = set(chars)
    outside = [f"{path} ({text!r})" for path, text in items if set(text) - alphabet]
    if outside:
        unknown = "".join(sorted(set("".join(text for _, text in items)) - alphabet))
        raise InputError(f"labels with characters {unknown!r} outside --chars {chars!r}: {name_some(outside)}")
    long = [f"{path} ({len(text)} characters)" for path, text in items if len(text) > most]
    if long:
        raise InputError(f"labels longer than the {most} characters {why}: {name_some(long)}")
