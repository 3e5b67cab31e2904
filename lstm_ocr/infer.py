"""Read the text of a CAPTCHA image with a trained checkpoint, or with its ONNX export.

    python lstm_ocr_infer.py --prefix ocr --epoch 100 sample.jpg
    Digits: [0, 0, 8, 9]

Several images or folders print one line per image, `PATH Digits: [...]`, and, when every image
has a label (a folder's labels.csv, or names NNNN_TEXT as `captcha_generator.py --count` writes
them), a misread line says what was expected and a last line gives the accuracy.

`--epoch` defaults to the prefix's latest; `--onnx model.onnx` reads with ONNX Runtime instead (a
model `onnx_export.py` wrote; MXNet is not imported); `--json` prints one JSON object per image with the
text's confidence, each character's probability and, when known, the label (the accuracy line then
goes to stderr); `--min_confidence X` marks readings below X as rejected; `--allowed CHARS` and
`--length N|MIN-MAX` constrain the reading to what you know of the captcha (reader.py). A reading
whose length lies outside what the model was trained on is marked `untrained_length`.

`--answer` reads arithmetic captchas (a model trained with `--style arithmetic`, such as
the shipped arith): the reading is parsed (arithmetic.py; never evaluated as code) and its integer answer
printed beside it, `Text: 7+3=? Answer: 10`; a reading that does not parse is marked `no_answer` with
its confidence (JSON: `"answer": null`). Labels are then answers (names NNNN_ANSWER), or expressions
(a labels file of texts), and the accuracy line counts right answers.

As a library, see lstm_ocr/reader.py: `from lstm_ocr import Reader`.
"""

import json
import os
import re
import sys

from lstm_ocr import arithmetic, diagnosis, labelled_data
from lstm_ocr.cli import ArgumentParser, InputError, exit_with, run_main
from lstm_ocr.ctc_metrics import lcs_ratio
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.reader import Reader, Reading, add_model_options, check_model_options, open_reader

__all__ = ["Reader"]  # the import path of earlier versions, `from lstm_ocr_infer import Reader`, keeps working


def format_text(text: str, hp: Hyperparams) -> str:
    """The example's `Digits: [0, 0, 8, 9]` for digit models; `Text: a7k2` for other alphabets."""
    if hp.digits_only:
        return f"Digits: {[int(c) for c in text]}"
    return f"Text: {text}"


def image_paths(paths: list[str]) -> list[str]:
    """The given files, and the image files (by extension) of the given folders, sorted."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += sorted(os.path.join(path, name) for name in os.listdir(path) if labelled_data.is_image_name(name))
        else:
            found.append(path)
    if not found:
        raise InputError(f"no image files in {', '.join(paths)}")
    return found


def labels_of(paths: list[str]) -> list[str | None]:
    """Each image's label: from its folder's labels file if it has one, else from a name NNNN_TEXT;
    None where neither says (`scan_2023.png` carries no label)."""
    files: dict[str, dict[str, str]] = {}
    labels = []
    for path in paths:
        folder = os.path.dirname(path)
        if folder not in files:  # each folder's labels file is read once (its paths come normalised)
            found = labelled_data.labels_file(folder or ".")
            files[folder] = labelled_data.read_labels_file(found) if found else {}
        by_file = files[folder]
        labels.append(by_file.get(os.path.normpath(path)) if by_file else labelled_data.generated_label(path))
    return labels


def _summary(texts: list[str], labels: list[str]) -> str:
    exact = sum(text == label for text, label in zip(texts, labels, strict=True)) / len(texts)
    lcs = sum(lcs_ratio(list(text), list(label)) for text, label in zip(texts, labels, strict=True)) / len(texts)
    return f"accuracy={exact:.4f} lcs_accuracy={lcs:.4f} images={len(texts)}"


def _answer_summary(readings: list[Reading], answers: list[int]) -> str:
    right = sum(r.answer is not None and r.answer == a for r, a in zip(readings, answers, strict=True))
    unparsed = sum(r.answer is None for r in readings)
    return f"answer_accuracy={right / len(readings):.4f} no_answer={unparsed} images={len(readings)}"


def expected_answer(label: str, path: str) -> int:
    """The answer a label gives: the label itself when it is an integer (names NNNN_ANSWER), else the
    answer of the expression it spells (a labels file of texts); InputError if it is neither."""
    if re.fullmatch(r"-?\d{1,18}", label):
        return int(label)
    value = arithmetic.answer(label)
    if value is None:
        raise InputError(f"{path}'s label {label!r} is neither an answer (an integer) nor an arithmetic expression")
    return value


def marks(reading: Reading, hp: Hyperparams, rejected: bool, expected: str | None,
          answer: int | None = None) -> str:
    """What a text line adds to the reading: its answer (with --answer; `answer` is then the label's),
    rejected, an untrained length, what a misread was expected to say."""
    found = ""
    if reading.answering:
        found += f" Answer: {reading.answer}" if reading.answer is not None else \
            f" no_answer (does not parse) confidence={reading.confidence:.4f}"
    if rejected:
        found += f" rejected confidence={reading.confidence:.4f}"
    if reading.untrained_length:
        found += f" untrained_length (trained on {hp.min_len}-{hp.max_len})"
    if reading.answering and answer is not None:
        if reading.answer != answer:
            found += f" wrong answer, expected {answer}"
    elif expected is not None and reading.text != expected:
        found += f" misread, expected {expected}"
    return found


def notes(paths: list[str], texts: list[str], labels: list[str], hp: Hyperparams) -> list[str]:
    """What the labelled readings say beyond the accuracy line (diagnosis.py): labels the model can never
    read, misreads mostly of letter case, too few images to trust the accuracy."""
    case_advice = ("this model tells upper from lower case poorly; if the site ignores case, compare in one case "
                   "(a model trained with --case fold reads either)")
    found = [diagnosis.outside_alphabet(list(zip(paths, labels, strict=True)), hp.chars),
             diagnosis.case_note(list(zip(texts, labels, strict=True)), case_advice),
             diagnosis.small_set(len(labels), "the accuracy counts",
                                 f"read {diagnosis.TRUSTED_IMAGES} or more labelled images to trust it")]
    return [note for note in found if note]


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="+", help="CAPTCHA image files, or folders of them")
    add_model_options(parser, "read with this ONNX model (onnx_export.py) instead of a checkpoint; MXNet is "
                              "not needed", "mark readings whose confidence is below X (0 to 1) as rejected")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object per image: {"path", "text", "confidence", "chars", "untrained_length"'
                             ', "answer" with --answer, and "label", "correct" when the label is known}')
    args = parser.parse_args()
    check_model_options(args)
    paths = image_paths(args.images)
    one_image = len(args.images) == 1 and paths == args.images
    found_labels = None if one_image else labels_of(paths)  # a labels file that cannot be read: before any work
    reader = open_reader(args)
    # One image: a bad one is the error (exit 2). Many: decoded a batch at a time, and an image that
    # cannot be read is its own `error:` line (exit 1 at the end), the others read.
    readings = reader.read_many(paths, args.allowed, args.length) if one_image else \
        list(reader.read_each(paths, args.allowed, args.length))
    hp = reader.hp
    rejected = [args.min_confidence is not None and r.error is None and r.confidence < args.min_confidence
                for r in readings]
    labels = [None] * len(paths) if found_labels is None else [None if label is None else hp.fold(label)
                                                                for label in found_labels]
    answers = [None if label is None or not args.answer else expected_answer(label, path)
               for path, label in zip(paths, labels, strict=True)]
    if one_image and not args.json:  # one image: exactly the example's output
        if readings[0].error is not None:
            exit_with(f"{paths[0]}: {readings[0].error}", code=1)
        print(format_text(readings[0].text, hp) + marks(readings[0], hp, rejected[0], None))
        return
    for path, reading, refused, label, answer in zip(paths, readings, rejected, labels, answers, strict=True):
        if args.json:
            found = reading.to_dict(path) | ({"rejected": refused} if args.min_confidence is not None else {})
            if answer is not None:
                found |= {"label": label, "expected_answer": answer,
                          "correct": reading.error is None and reading.answer == answer}
            elif label is not None:
                found |= {"label": label, "correct": reading.error is None and reading.text == label}
            print(json.dumps(found, ensure_ascii=False))
        elif reading.error is not None:
            print(path, f"error: {reading.error}")
        else:
            print(path, format_text(reading.text, hp) + marks(reading, hp, refused, label, answer))
    if all(label is not None for label in labels):
        if args.answer:
            line = _answer_summary(readings, answers)
            right = [r.answer == a for r, a in zip(readings, answers, strict=True)]
        else:
            line = _summary([r.text for r in readings], labels)
            right = [r.text == label for r, label in zip(readings, labels, strict=True)]
        if args.min_confidence is not None:
            kept = [ok for ok, refused in zip(right, rejected, strict=True) if not refused]
            line += f" rejected={sum(rejected)}"
            if kept:
                line += f" accepted_accuracy={sum(kept) / len(kept):.4f}"
        print(line, file=sys.stderr if args.json else sys.stdout)
        if not args.answer:
            for note in notes(paths, [r.text for r in readings], labels, hp):
                print(f"note: {note}", file=sys.stderr)
    if any(r.error is not None for r in readings):
        sys.exit(1)


def command() -> None:
    """`lstm-ocr-read` and the root script: main() with one `error:` line for a refusal (run_main)."""
    run_main(main)


if __name__ == "__main__":
    run_main(main)
