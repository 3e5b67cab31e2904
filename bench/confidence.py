"""Is the confidence worth a threshold? On a labelled folder: for each --min_confidence, the share of
images rejected, the accuracy of those kept, and of those rejected.

    .venv/bin/python captcha_generator.py --count 1000 --seed 1 font/DroidSansMono.ttf /tmp/testset/
    .venv/bin/python bench/confidence.py /tmp/testset [--prefix ocr --epoch 12 | --onnx model.onnx]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lstm_ocr.infer import image_paths, labels_of
from lstm_ocr.reader import Reader  # noqa: E402

THRESHOLDS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--prefix", default="ocr")
    parser.add_argument("--epoch", type=int, default=12)
    parser.add_argument("--onnx")
    args = parser.parse_args()
    paths = image_paths([args.folder])
    labels = labels_of(paths)
    reader = Reader.onnx(args.onnx) if args.onnx else Reader(args.prefix, args.epoch)
    readings = reader.read_many(paths)
    right = [r.text == label for r, label in zip(readings, labels, strict=True)]
    print(f"# {' '.join(sys.argv)}  ({len(paths)} images, accuracy {sum(right) / len(right):.4f})")
    print("| min_confidence | rejected | accuracy of those kept | accuracy of those rejected |")
    print("|---|---|---|---|")
    for threshold in THRESHOLDS:
        kept = [ok for r, ok in zip(readings, right, strict=True) if r.confidence >= threshold]
        dropped = [ok for r, ok in zip(readings, right, strict=True) if r.confidence < threshold]
        share = f"{sum(kept) / len(kept):.4f}" if kept else "-"
        dropped_share = f"{sum(dropped) / len(dropped):.4f}" if dropped else "-"
        print(f"| {threshold:g} | {len(dropped) / len(readings):.1%} | {share} | {dropped_share} |")


if __name__ == "__main__":
    main()
