"""Right answers on fresh held-out arithmetic captchas (`7+3=?`), measured the user's way: each set is
written to a folder, then read by `lstm_ocr_infer.py --answer --json DIR`; ddddocr reads the same files
beside it, its reading parsed by the same parser (arithmetic.py).

    .venv/bin/python bench/arithmetic_heldout.py [--prefix arith --epoch N] [--count 500]
        [--seed 2601] [--sets own,wheezy] [--keep DIR] [--ddddocr]

- own:    `captcha_generator.py --style arithmetic --count N --seed S font/` (the project's arithmetic
  look: the varied style's looks in every font of font/);
- wheezy: the same expressions (the same seed draws the same texts) in wheezy-captcha's documented
  default look (200x75, JPEG quality 75), in LiberationMono-Bold as bench/heldout.py draws it. Never
  training data. Needs `pip install -r requirements-bench.txt`.
Files are named NNNN_ANSWER, with their texts in the folder's labels.csv. Per set: the share of right
answers, of readings that do not parse (no answer given), and of texts read exactly (`x`, `×` and `*`
told apart), for this project's model and for ddddocr 1.6.1's plain `classification(image bytes)`.
"""

import argparse
import csv
import json
import os
import random
import sys
import tempfile

from lstm_ocr import checkpoint, models
from readers import chosen_sets, kept_set, run  # also puts the repository root on sys.path

# isort: split

from lstm_ocr import arithmetic  # after readers: found in the repository root even before `pip install -e .` again

SETS = ("own", "wheezy")
WHEEZY_FONT = "font/LiberationMono-Bold.ttf"


def expressions(count: int, seed: int) -> list[str]:
    """The texts `captcha_generator.py --style arithmetic --count COUNT --seed SEED` draws."""
    rng = random.Random(seed)
    return [arithmetic.random_expression(rng) for _ in range(count)]


def write_labels(folder: str, rows: list[tuple[str, str]]) -> None:
    with open(os.path.join(folder, "labels.csv"), "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([("file", "text"), *rows])


def write_wheezy(folder: str, texts: list[str], seed: int, font: str) -> None:
    """The texts in wheezy-captcha's default look, named NNNN_ANSWER.jpg, texts in labels.csv."""
    from wheezy.captcha.image import background, captcha, curve, noise, offset, rotate, smooth, text, warp

    from lstm_ocr.captcha_generator import missing_glyphs
    missing = missing_glyphs(font, arithmetic.ALPHABET)
    if missing:
        sys.exit(f"error: {font} has no glyph for {missing!r}")
    draw = captcha(drawings=[background(), text(fonts=[font], drawings=[warp(), rotate(), offset()]),
                             curve(), noise(), smooth()])
    random.seed(seed)
    os.makedirs(folder)
    rows = []
    for index, expression in enumerate(texts):
        name = f"{index:04d}_{arithmetic.answer(expression)}.jpg"
        draw(expression).save(os.path.join(folder, name), "JPEG", quality=75)
        rows.append((name, expression))
    write_labels(folder, rows)


def labels(folder: str) -> dict[str, str]:
    with open(os.path.join(folder, "labels.csv"), encoding="utf-8") as file:
        return {row[0]: row[1] for row in list(csv.reader(file))[1:]}


def ours(folder: str, prefix: str, epoch: int) -> tuple[tuple[float, float, float], str]:
    """Right answers, unparsed readings and exact texts of lstm_ocr_infer.py --answer on the folder, and
    the right answers by the drawn text's length."""
    found = [json.loads(line) for line in run("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", str(epoch),
                                              "--answer", "--json", folder).splitlines()]
    by_length: dict[int, list[bool]] = {}
    for f in found:
        by_length.setdefault(len(f["label"]), []).append(f["correct"])
    lengths = ", ".join(f"{n}: {sum(right) / len(right):.3f} ({len(right)})" for n, right in sorted(by_length.items()))
    return (sum(f["correct"] for f in found) / len(found), sum(f["answer"] is None for f in found) / len(found),
            sum(f["text"] == f["label"] for f in found) / len(found)), lengths


def theirs(folder: str) -> tuple[float, float, float]:
    """The same for ddddocr's plain reading, parsed by arithmetic.answer."""
    import ddddocr  # bench-only (requirements-bench.txt)

    ocr = ddddocr.DdddOcr(show_ad=False)
    texts = labels(folder)
    right = unparsed = exact = 0
    for name, expression in texts.items():
        with open(os.path.join(folder, name), "rb") as file:
            read = ocr.classification(file.read())
        value = arithmetic.answer(read)
        right += value is not None and value == arithmetic.answer(expression)
        unparsed += value is None
        exact += read == expression
    return right / len(texts), unparsed / len(texts), exact / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="arith")
    parser.add_argument("--epoch", type=int, default=None, help="[default: the last saved]")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2601)
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--wheezy_font", default=WHEEZY_FONT)
    parser.add_argument("--keep", help="write the sets into this folder, kept (DIR/arith-SET-nCOUNT-seedSEED: "
                                       "reused by a run of the same settings), not a temporary one")
    parser.add_argument("--ddddocr", action="store_true", help="also read every set with ddddocr")
    args = parser.parse_args()
    args.prefix = models.resolve(args.prefix)  # a checkpoint, or a shipped model's name
    sets = chosen_sets(parser, args.sets, SETS)
    if args.count <= 0:
        parser.error(f"--count must be positive, got {args.count}")
    epoch = args.epoch or checkpoint.saved_epochs(args.prefix)[-1]
    print(f"# {' '.join(sys.argv)}  ({checkpoint.params_path(args.prefix, epoch)}, {args.count} images a set)")
    print("| set | reader | right answers | no answer (does not parse) | exact text |")
    print("|---|---|---|---|---|")
    by_length: list[str] = []
    with tempfile.TemporaryDirectory() as temporary:
        base = args.keep or temporary
        os.makedirs(base, exist_ok=True)
        for name in sets:
            font = {"font": os.path.basename(args.wheezy_font)} if name == "wheezy" else {}
            folder = kept_set(base, f"arith-{name}", n=args.count, seed=args.seed, **font)
            if not os.path.isdir(folder):
                if name == "wheezy":
                    write_wheezy(folder, expressions(args.count, args.seed), args.seed, args.wheezy_font)
                else:
                    run("captcha_generator.py", "--style", "arithmetic", "--count", str(args.count), "--seed",
                        str(args.seed), "font/", folder)
            figures, lengths = ours(folder, args.prefix, epoch)
            by_length.append(f"# {name}, right answers by the text's length (images): {lengths}")
            readers = [(f"lstm-ocr {os.path.basename(args.prefix)}-{epoch:04d}", figures)]
            if args.ddddocr:
                readers.append(("ddddocr 1.6.1", theirs(folder)))
            for reader, (right, unparsed, exact) in readers:
                print(f"| {name} | {reader} | {right:.4f} | {unparsed:.4f} | {exact:.4f} |", flush=True)
    print("\n".join(by_length))


if __name__ == "__main__":
    main()
