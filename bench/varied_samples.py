"""A contact sheet of varied-style captchas (lstm_ocr/styles.py), each with its label, to look at.

    .venv/bin/python bench/varied_samples.py [--count 40] [--seed 1] [--out results/varied-samples.png]
        [--family NAME] [--chars 0123456789 --case keep]

--family draws every sample with that family of lstm_ocr.styles.FAMILY_SHARES forced on (and none in
the example's look), to look at one family at a time.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from lstm_ocr.captcha_generator import CaptchaGen, find_fonts  # noqa: E402
from lstm_ocr.hyperparameters import VARIED_MAX_SIZE, Hyperparams  # noqa: E402
from lstm_ocr.styles import FAMILY_SHARES, VariedCaptcha  # noqa: E402

COLUMNS = 5
LABEL_HEIGHT = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min_len", type=int, default=3)
    parser.add_argument("--max_len", type=int, default=6)
    parser.add_argument("--chars", default="0123456789", help="the texts' characters")
    parser.add_argument("--case", default="keep", choices=["keep", "fold"], help="as lstm_ocr_train.py's --case")
    parser.add_argument("--family", choices=sorted(set(FAMILY_SHARES) - {"example"}),
                        help="force this family on in every sample")
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "varied-samples.png"))
    args = parser.parse_args()
    hp = Hyperparams(chars=args.chars, min_len=args.min_len, max_len=args.max_len, case=args.case)
    fonts = find_fonts(os.path.join(ROOT, "font"), hp.chars)
    gen = CaptchaGen(fonts, hp, seed=args.seed, style="varied")
    if args.family:
        gen.varied = VariedCaptcha(fonts, args.seed, shares={args.family: 1.0, "example": 0.0})
    cell_w, cell_h = VARIED_MAX_SIZE[0] + 10, VARIED_MAX_SIZE[1] + LABEL_HEIGHT + 10
    rows = -(-args.count // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * cell_w, rows * cell_h), (150, 150, 150))
    draw = ImageDraw.Draw(sheet)
    label_font = ImageFont.truetype(next((f for f in fonts if f.endswith("DejaVuSans.ttf")), fonts[0]), 12)
    for index in range(args.count):
        text = gen.random_text()
        image = gen.render(text)
        x, y = (index % COLUMNS) * cell_w + 5, (index // COLUMNS) * cell_h + 5
        sheet.paste(image, (x, y))
        draw.text((x, y + image.size[1] + 2), f"{text}  {image.size[0]}x{image.size[1]}", font=label_font,
                  fill=(0, 0, 0))
    sheet.save(args.out)
    forced = f" with {args.family} forced on" if args.family else ""
    print(f"# {' '.join(sys.argv)}\n{args.count} varied captchas{forced} ({len(fonts)} fonts, seed {args.seed}) "
          f"in {args.out}")


if __name__ == "__main__":
    main()
