"""The `varied` captcha style: a wide, randomized family of looks, drawn by this project's own code
with Pillow, NumPy and OpenCV, mixed with the example's look. Fully reproducible from a seed.

A share of the images (VARIED_EXAMPLE_SHARE) is the example's own look, the captcha package's,
drawn with its randomness taken from our seeded generator. Every other image draws a size from
about 50x20 to 300x100, text and background colours, per-character size (up to +-25 %) and spacing,
and then each family of distortion below on its own, with its share of those images (FAMILY_SHARES;
a share of 1 or 0 forces a family on or off, for tests and samples). The families are the ones
common captcha libraries document; none is in more than two thirds of the images, so that no
single one becomes what the network relies on:

- text placement: `small_text`, small text (at most a quarter to a half of the canvas's height and
  a third to two thirds of its width) anywhere in a large field (45 to 100 pixels high, 1.6 to 3.5
  times as wide); else the text takes 45-85 % of the height of a canvas of its width and margins;
- glyphs: `font_per_char` (else one font an image), `colour_per_char`, `rotation` (mild or
  strong, per glyph), `slant`, `glyph_warp` (per glyph: a perspective warp and a stretch),
  `crowded` (glyphs that touch and overlap; else spaced from slightly overlapping to apart),
  `hollow` (outline glyphs: empty, or filled with another colour);
- the text as a whole: `baseline_wave`, `text_warp` (an elastic warp, a sine wave in half of them);
- lines and noise: `lines` (strike lines through the text), `arcs`, `curve` (a wavy curve across),
  `stroke_curve` (a curve through the text as wide as its strokes, in its colour), `dots`,
  `speckle` (salt-and-pepper or coloured pixel noise, sometimes in clumps);
- the whole image: `image_warp` (a sine warp of everything drawn), `blur` (Gaussian or smoothing),
  `jpeg` artifacts, `invert` (light text on dark);
- backgrounds, one kind each: solid, gradient, texture (smooth noise), noise (grain) or pattern
  (stripes, a grid or a checkerboard), all in colour or gray.

Before this list (issue 31) the style lacked `small_text` (the text always took 45-85 % of the
canvas's height), `hollow`, `glyph_warp`, `crowded` (spacing reached -25 % of a glyph), `speckle`,
`image_warp` (only the text layer was warped) and the pattern backgrounds.
"""

import io
import random
from collections.abc import Iterator
from contextlib import contextmanager

import captcha.image as captcha_image
import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from lstm_ocr.hyperparameters import (
    RENDER_SCALE,
    VARIED_EXAMPLE_SHARE,
    VARIED_INVERT_SHARE,
    VARIED_MAX_SIZE,
    VARIED_MIN_SIZE,
    Hyperparams,
)

GLYPH_SIZE = 96  # glyphs are drawn once at this font size, then scaled per character
WARP_OVERSAMPLING = 1.5  # the text layer is warped at this many times its final height (or at glyph size)
MIN_TEXT_HEIGHT = 12  # pixels: smaller digits would be unreadable to a person too
MIN_CONTRAST = 70  # gray levels between text and background (the network reads gray)
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MIN_ADVANCE = 0.6  # of a glyph's width: the least a crowded text advances from one glyph to the next
MIN_HOLLOW_HEIGHT = 22  # pixels: outline glyphs smaller than this blur into blobs
MIN_OUTLINE = 1.3  # pixels of the final image: the least width of an outline glyph's line
SMALL_TEXT_SHARE = (0.25, 0.5)  # small text's height, as a share of its canvas's height
SMALL_TEXT_WIDTH = (0.33, 0.7)  # ... and its width, as a share of the canvas's width
SMALL_TEXT_MIN_HEIGHT = 45  # pixels: the lowest canvas drawn with small text
BACKGROUNDS = ("solid", "gradient", "texture", "noise", "pattern")
# Each family's share of the images in the project's own look (see the module's docstring).
FAMILY_SHARES = {
    "example": VARIED_EXAMPLE_SHARE,  # of all images: the example's look instead of the project's
    "small_text": 0.2,
    "font_per_char": 0.3,
    "colour_per_char": 0.25,
    "rotation": 0.67,
    "slant": 0.3,
    "glyph_warp": 0.25,
    "crowded": 0.2,
    "hollow": 0.12,
    "baseline_wave": 0.4,
    "text_warp": 0.5,
    "lines": 0.6,
    "arcs": 0.5,
    "curve": 0.3,
    "stroke_curve": 0.3,
    "dots": 0.5,
    "speckle": 0.2,
    "image_warp": 0.15,
    "blur": 0.4,
    "jpeg": 0.3,
    "invert": VARIED_INVERT_SHARE,
}


class _SeededSecrets:
    """The few `secrets` functions the captcha package calls, from a seeded `random.Random`."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def randbelow(self, n: int) -> int:
        return self.rng.randrange(n)

    def randbits(self, k: int) -> int:
        return self.rng.getrandbits(k)

    def choice(self, seq):
        return self.rng.choice(seq)


@contextmanager
def _seeded_captcha(rng: random.Random) -> Iterator[None]:
    """Within the block, the captcha package draws its randomness from `rng` (it uses `secrets`)."""
    saved = captcha_image.secrets
    captcha_image.secrets = _SeededSecrets(rng)
    try:
        yield
    finally:
        captcha_image.secrets = saved


def _color(rng: np.random.Generator, luma: float) -> np.ndarray:
    """A random RGB colour (float32, 0..255) whose gray level is about `luma`."""
    hue = rng.random(3).astype(np.float32)
    saturation = rng.choice([0.0, rng.uniform(0, 120)])
    color = luma + saturation * (hue - float(hue @ LUMA))
    return np.clip(color, 0, 255)


class VariedCaptcha:
    """Renders texts in the varied style; `render` returns an RGB image of a random size and keeps the
    text's box in it as `text_box`. `shares` overrides families' shares of FAMILY_SHARES."""

    def __init__(self, font_paths: list[str], seed: int | None = None, shares: dict[str, float] | None = None):
        unknown = sorted(set(shares or {}) - set(FAMILY_SHARES))
        if unknown:
            raise ValueError(f"unknown families {unknown}; the families are {sorted(FAMILY_SHARES)}")
        self.shares = {**FAMILY_SHARES, **(shares or {})}
        self.rng = np.random.default_rng(None if seed is None else [seed, 1])
        self.example_rng = random.Random(int(self.rng.integers(2**63)))
        self.fonts = [ImageFont.truetype(path, GLYPH_SIZE) for path in font_paths]
        self.glyphs: dict[tuple[int, str], tuple[np.ndarray, int]] = {}
        # the last text's (left, top, right, bottom), before an image_warp; None for the example's look
        self.text_box: tuple[int, int, int, int] | None = None
        # The example's look at its own size (the example network's image, drawn at RENDER_SCALE:
        # 160x60), whatever this network's input size: the captcha package sizes its glyphs in
        # pixels, so a larger canvas would draw a look of smaller text that no held-out set has.
        example = Hyperparams()
        self.example = captcha_image.ImageCaptcha(width=example.image_width * RENDER_SCALE,
                                                  height=example.image_height * RENDER_SCALE, fonts=font_paths)

    def drawn(self, family: str) -> bool:
        """Whether this image draws `family` (one random draw, even for a share of 0 or 1, so that forcing
        a family leaves the other draws of the image as they were up to it)."""
        return bool(self.rng.random() < self.shares[family])

    # --- the text layer ---------------------------------------------------------------------------

    def glyph(self, font: int, char: str) -> tuple[np.ndarray, int]:
        """The character's coverage (float32 in [0, 1], full line height, ink columns only) and the
        row of its baseline; drawn once per font and character."""
        key = (font, char)
        if key not in self.glyphs:
            face = self.fonts[font]
            ascent, descent = face.getmetrics()
            left, top, right, bottom = face.getbbox(char)
            pad = GLYPH_SIZE // 8
            height = max(ascent + descent, bottom) + 2 * pad
            image = Image.new("L", (max(1, right - left) + 2 * pad, height))
            ImageDraw.Draw(image).text((pad - left, pad), char, font=face, fill=255)
            mask = np.asarray(image, dtype=np.float32) / 255
            columns = np.flatnonzero(mask.max(axis=0) > 0)
            if columns.size:
                mask = mask[:, columns[0]:columns[-1] + 1]
            self.glyphs[key] = (np.ascontiguousarray(mask), pad + ascent)
        return self.glyphs[key]

    def place_glyph(self, mask: np.ndarray, baseline: int, linear: np.ndarray,
                    corner_jitter: float) -> tuple[np.ndarray, np.ndarray]:
        """The glyph transformed by `linear` (2x2), its corners then moved at random by up to
        `corner_jitter` of its height (a perspective warp), and the transformed middle of its baseline."""
        h, w = mask.shape
        corners = np.array([[0, w, 0, w], [0, 0, h, h]], dtype=np.float64)
        moved = linear @ corners
        if corner_jitter:
            moved = moved + self.rng.uniform(-corner_jitter, corner_jitter, (2, 4)) * h
        low = moved.min(axis=1)
        size = (int(np.ceil(moved[0].max() - low[0])) + 1, int(np.ceil(moved[1].max() - low[1])) + 1)
        anchor = np.array([[[w / 2, baseline]]], dtype=np.float64)
        if corner_jitter:
            matrix = cv2.getPerspectiveTransform(corners.T.astype(np.float32),
                                                 (moved - low[:, None]).T.astype(np.float32))
            warped = cv2.warpPerspective(mask, matrix, size, flags=cv2.INTER_LINEAR)
            return warped, cv2.perspectiveTransform(anchor, matrix)[0, 0]
        matrix = np.hstack([linear, -low[:, None]])
        return cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_LINEAR), cv2.transform(anchor, matrix)[0, 0]

    def text_layer(self, text: str, colors: list[np.ndarray], height: float,
                   fill: np.ndarray | None = None, hollow: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The text's coverage (h, w) and, with several colours or a fill, its colour (h, w, 3), cropped
        to the ink, about `height` pixels high or somewhat more (drawn at glyph scale, shrunk before
        the warps); `hollow` draws the glyphs' outlines only, filled with `fill` if it is given."""
        rng = self.rng
        font = int(rng.integers(len(self.fonts)))
        font_per_char = self.drawn("font_per_char")
        max_rotation = (rng.choice([rng.uniform(0, 12), rng.uniform(10, 35)]) if self.drawn("rotation") else 0.0)
        slant = rng.uniform(-0.3, 0.3) if self.drawn("slant") else 0.0
        glyph_warp = self.drawn("glyph_warp")
        size_jitter = rng.uniform(0, 0.25)
        spacing = rng.uniform(-0.5, -0.25) if self.drawn("crowded") else rng.uniform(-0.2, 0.35)
        jitter_y = rng.uniform(0, 0.12) * GLYPH_SIZE
        wave = rng.uniform(0, 0.15) * GLYPH_SIZE if self.drawn("baseline_wave") else 0.0
        wave_period, wave_phase = rng.uniform(2, 6), rng.uniform(0, 2 * np.pi)
        placed = []
        x = 0.0
        for index, char in enumerate(text):
            mask, baseline = self.glyph(int(rng.integers(len(self.fonts))) if font_per_char else font, char)
            scale = 1 + rng.uniform(-size_jitter, size_jitter)
            angle = np.radians(rng.uniform(-max_rotation, max_rotation))
            shear = slant + rng.uniform(-0.05, 0.05)
            cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
            stretch = rng.uniform(0.7, 1.35) if glyph_warp else 1.0
            linear = np.array([[cos, -sin], [sin, cos]]) @ np.array([[stretch, -shear], [0, 1]])
            warped, anchor = self.place_glyph(mask, baseline, linear, rng.uniform(0.04, 0.12) if glyph_warp else 0.0)
            y = wave * np.sin(index / wave_period * 2 * np.pi + wave_phase) + rng.uniform(-jitter_y, jitter_y)
            placed.append((warped, x, y - anchor[1], colors[index % len(colors)]))
            # the next glyph starts past the middle of this one, whatever the spacing: texts keep their order
            x += max(warped.shape[1] + spacing * GLYPH_SIZE * 0.5 * scale, MIN_ADVANCE * warped.shape[1])
        top = min(p[2] for p in placed)
        layer_w = int(np.ceil(max(p[1] + p[0].shape[1] for p in placed) - min(p[1] for p in placed))) + 1
        layer_h = int(np.ceil(max(p[2] + p[0].shape[0] for p in placed) - top)) + 1
        first = min(p[1] for p in placed)
        coverage = np.zeros((layer_h, layer_w), dtype=np.float32)
        color = np.zeros((layer_h, layer_w, 3), dtype=np.float32) if len(colors) > 1 else None
        for warped, left, row, char_color in placed:
            r, c = int(round(row - top)), int(round(left - first))
            h, w = warped.shape
            region = coverage[r:r + h, c:c + w]
            warped = warped[:region.shape[0], :region.shape[1]]
            if color is not None:
                color[r:r + h, c:c + w][warped > region] = char_color
            np.maximum(region, warped, out=region)
        shrink = min(1.0, WARP_OVERSAMPLING * height / layer_h)
        if shrink < 1:
            size = (max(1, round(coverage.shape[1] * shrink)), max(1, round(coverage.shape[0] * shrink)))
            coverage = cv2.resize(coverage, size, interpolation=cv2.INTER_AREA)
            color = None if color is None else cv2.resize(color, size, interpolation=cv2.INTER_AREA)
        if hollow:
            least = MIN_OUTLINE * coverage.shape[0] / height  # layer pixels of MIN_OUTLINE final ones
            coverage, color = self.outline(coverage, color, colors[0], fill, GLYPH_SIZE * shrink, least)
        return self.warp(coverage, color, GLYPH_SIZE * shrink)

    def outline(self, coverage: np.ndarray, color: np.ndarray | None, text_color: np.ndarray,
                fill: np.ndarray | None, unit: float, least: float) -> tuple[np.ndarray, np.ndarray | None]:
        """Outline glyphs: a line around each glyph's shape, a few hundredths of `unit` (the glyph size
        in the layer's pixels) wide and at least `least`; inside, the background, or `fill` if given."""
        radius = max(1, round(max(unit * self.rng.uniform(0.03, 0.06), least)))
        pad = radius + 1
        coverage = cv2.copyMakeBorder(coverage, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
        if color is not None:
            color = cv2.copyMakeBorder(color, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        grown = cv2.dilate(coverage, kernel)
        if fill is None:
            return np.clip(grown - coverage, 0, 1), color
        line = np.broadcast_to(text_color, coverage.shape + (3,)) if color is None else color
        inside = coverage[..., None]
        return grown, (line * (1 - inside) + fill * inside).astype(np.float32)

    def warp(self, coverage: np.ndarray, color: np.ndarray | None,
             unit: float) -> tuple[np.ndarray, np.ndarray | None]:
        """An elastic warp and a wave of the whole text layer (each sometimes), cropped to the ink;
        `unit` is the glyph size in the layer's pixels."""
        rng = self.rng
        h, w = coverage.shape
        if self.drawn("text_warp"):
            pad = max(1, int(unit / 6))
            coverage = cv2.copyMakeBorder(coverage, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
            if color is not None:
                color = cv2.copyMakeBorder(color, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            h, w = coverage.shape
            xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            strength = rng.uniform(0.02, 0.09) * unit
            cells = (int(rng.integers(2, 5)), int(rng.integers(3, 3 + w / unit + 4)))
            for grid in (xs, ys):
                field = rng.uniform(-1, 1, cells).astype(np.float32)
                grid += cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC) * strength
            if rng.random() < 0.5:
                ys += rng.uniform(0.05, 0.2) * unit * np.sin(xs / rng.uniform(0.7, 3) / unit * 2 * np.pi
                                                             + rng.uniform(0, 2 * np.pi))
            xs, ys = cv2.convertMaps(xs, ys, cv2.CV_16SC2)
            coverage = cv2.remap(coverage, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            if color is not None:
                color = cv2.remap(color, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        rows, columns = np.flatnonzero(coverage.max(axis=1) > 0.05), np.flatnonzero(coverage.max(axis=0) > 0.05)
        if rows.size and columns.size:
            coverage = coverage[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
            if color is not None:
                color = color[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
        return coverage, color

    # --- the image --------------------------------------------------------------------------------

    def size_for(self, height: float, text_share: float, text_height: int,
                 text_width: int, small_text: bool = False) -> tuple[int, int, float, float]:
        """The image's (width, height) and the text's scale (x, y) to fit it, within the size range.
        The text takes `text_share` of the drawn `height`, in a width of the text and margins; with
        `small_text`, in a canvas 1.6 to 3.5 times as wide as high, of which it takes at most
        SMALL_TEXT_WIDTH (shrunk to fit it, down to MIN_TEXT_HEIGHT)."""
        rng = self.rng
        (min_w, min_h), (max_w, max_h) = VARIED_MIN_SIZE, VARIED_MAX_SIZE
        scale_y = text_share * height / text_height
        aspect = rng.uniform(0.75, 1.3)
        if small_text:
            height = int(np.clip(round(height), min_h, max_h))
            width = int(np.clip(round(height * rng.uniform(1.6, 3.5)), min_w, max_w))
            shrink = min(1.0, rng.uniform(*SMALL_TEXT_WIDTH) * width / (text_width * scale_y * aspect))
            scale_y = max(scale_y * shrink, MIN_TEXT_HEIGHT / text_height)
        else:
            margin = rng.uniform(0.05, 0.5) * height
            width = int(np.clip(round(text_width * scale_y * aspect + 2 * margin), min_w, max_w))
            height = int(np.clip(round(min(height, width / 1.2)), min_h, max_h))
        scale_x = scale_y * aspect
        fit = min(1.0, (width - 2) / (text_width * scale_x), (height - 2) / (text_height * scale_y))
        return width, height, scale_x * fit, scale_y * fit

    def background(self, height: int, width: int, luma: float) -> np.ndarray:
        """A (height, width, 3) float32 background of gray level about `luma`, of one of BACKGROUNDS."""
        rng = self.rng
        kind = rng.choice(BACKGROUNDS)
        first = _color(rng, luma)
        if kind == "solid":
            return np.broadcast_to(first, (height, width, 3)).astype(np.float32)
        second = _color(rng, np.clip(luma + rng.uniform(-40, 40), 0, 255))
        if kind == "gradient":
            angle = rng.uniform(0, 2 * np.pi)
            xs, ys = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
            t = xs * np.cos(angle) + ys * np.sin(angle)
            t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        elif kind == "texture":
            cells = (int(rng.integers(2, 12)), int(rng.integers(2, 24)))
            t = cv2.resize(rng.random(cells).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
            t = np.clip(t, 0, 1)
        elif kind == "pattern":
            t = self.pattern(height, width)
        else:
            grain = rng.normal(0, rng.uniform(8, 30), (height, width, 1 if rng.random() < 0.5 else 3))
            return np.clip(first + grain, 0, 255).astype(np.float32)
        return (first + (second - first) * t[..., None]).astype(np.float32)

    def pattern(self, height: int, width: int) -> np.ndarray:
        """Stripes, a grid or a checkerboard: (height, width) float32 in [0, 1], softened."""
        rng = self.rng
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, max(5.0, height / 3))
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        along = (xs * np.cos(angle) + ys * np.sin(angle)) / period
        across = (ys * np.cos(angle) - xs * np.sin(angle)) / period
        kind = rng.choice(["stripes", "grid", "checkerboard"])
        if kind == "checkerboard":
            t = ((np.floor(along) + np.floor(across)) % 2).astype(np.float32)
        else:
            duty = rng.uniform(0.1, 0.4)
            t = ((along % 1) < duty).astype(np.float32)
            if kind == "grid":
                np.maximum(t, ((across % 1) < duty).astype(np.float32), out=t)
        return cv2.GaussianBlur(t, (0, 0), 0.6)

    def noise(self, image: Image.Image, text_color: tuple, box: tuple[int, int, int, int], hollow: bool) -> None:
        """Strike lines, arcs, curves and dots drawn over the image, in the text's or other colours, as
        thick as the text is high; `box` is the text's (left, top, right, bottom). Over `hollow` text,
        no curve as wide as its strokes (it would read as part of a glyph)."""
        rng = self.rng
        draw = ImageDraw.Draw(image)
        width, height = image.size
        left, top, right, bottom = box
        thick = max(1, round((bottom - top) / 16))

        def color() -> tuple:
            return text_color if rng.random() < 0.6 else tuple(int(c) for c in rng.integers(0, 256, 3))

        for _ in range(int(rng.integers(1, 4)) if self.drawn("lines") else 0):  # strike lines through the text
            y0, y1 = rng.uniform(top, bottom, 2)
            draw.line([(rng.uniform(0, left + 1), y0), (rng.uniform(right - 1, width), y1)], fill=color(),
                      width=int(rng.integers(1, thick + 2)))
        for _ in range(int(rng.integers(1, 3)) if self.drawn("arcs") else 0):
            x0, y0 = rng.uniform(-width / 2, width / 2), rng.uniform(-height / 2, height / 2)
            x1, y1 = x0 + rng.uniform(width / 3, width * 1.2), y0 + rng.uniform(height / 2, height * 1.5)
            start = rng.uniform(0, 360)
            draw.arc([x0, y0, x1, y1], start, start + rng.uniform(60, 300), fill=color(),
                     width=int(rng.integers(1, thick + 2)))
        if self.drawn("curve"):  # a wavy curve across the image
            xs = np.linspace(0, width, 24)
            ys = height / 2 + rng.uniform(0.1, 0.35) * height * np.sin(xs / width * rng.uniform(2, 9)
                                                                         + rng.uniform(0, 6.3))
            draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=color(),
                      width=int(rng.integers(1, thick + 2)))
        if self.drawn("stroke_curve") and not hollow:  # through the text, as wide as its strokes, in its colour
            stroke = max(1, round((bottom - top) * rng.uniform(0.06, 0.14)))
            knots = rng.uniform(top, bottom, (1, int(rng.integers(3, 7)))).astype(np.float32)
            ys = cv2.resize(knots, (24, 1), interpolation=cv2.INTER_CUBIC)[0]
            xs = np.linspace(rng.uniform(0, left + 1), rng.uniform(right - 1, width), 24)
            draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=text_color, width=stroke, joint="curve")
        if self.drawn("dots"):
            radius = rng.uniform(0.5, max(1.0, (bottom - top) / 20))
            dots = int(rng.integers(5, 10 + width * height / (100 * max(1.0, radius) ** 2)))
            dot_color = color() if rng.random() < 0.7 else image.getpixel((0, 0))  # or holes in the strokes
            for x, y in zip(rng.uniform(0, width, dots), rng.uniform(0, height, dots), strict=True):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=dot_color)

    def speckle(self, pixels: np.ndarray, text_color: np.ndarray) -> None:
        """Pixel noise over `pixels` (h, w, 3 uint8), in place: salt and pepper, the text's colour or
        random colours, on 1-6 % of the pixels, sometimes in clumps of 2x2."""
        rng = self.rng
        h, w, _ = pixels.shape
        clumps = rng.random() < 0.3  # of 2x2 pixels, a quarter as many
        hit = rng.random((h, w)) < rng.uniform(0.01, 0.06) / (4 if clumps else 1)
        if clumps:
            hit = cv2.dilate(hit.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
        count = int(hit.sum())
        kind = rng.choice(["salt_and_pepper", "text", "colours"])
        if kind == "salt_and_pepper":
            values = np.repeat(rng.choice([0, 255], count).astype(np.uint8)[:, None], 3, axis=1)
        elif kind == "text":
            values = np.broadcast_to(text_color.astype(np.uint8), (count, 3))
        else:
            values = rng.integers(0, 256, (count, 3), dtype=np.uint8)
        pixels[hit] = values

    def image_warp(self, pixels: np.ndarray) -> np.ndarray:
        """A sine warp of the whole image (h, w, 3 uint8): rows and columns shifted by a few
        hundredths of its height, along waves of about its height."""
        rng = self.rng
        h, w, _ = pixels.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        amplitude, period = rng.uniform(0.02, 0.07) * h, rng.uniform(0.6, 2.0) * h
        map_y = ys + amplitude * np.sin(xs / period * 2 * np.pi + rng.uniform(0, 2 * np.pi))
        map_x = xs + rng.uniform(0, 0.5) * amplitude * np.sin(ys / period * 2 * np.pi + rng.uniform(0, 2 * np.pi))
        return cv2.remap(pixels, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def render(self, text: str) -> Image.Image:
        """The RGB captcha of `text`, in a look drawn at random."""
        rng = self.rng
        if self.drawn("example"):
            with _seeded_captcha(self.example_rng):
                image = self.example.generate_image(text)
            if rng.random() < 0.5:  # the example's look, at another size and aspect ratio
                (min_w, min_h), (max_w, max_h) = VARIED_MIN_SIZE, VARIED_MAX_SIZE
                height = int(np.exp(rng.uniform(np.log(min_h), np.log(max_h))))
                width = int(np.clip(height * rng.uniform(1.8, 3.6), min_w, max_w))
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            self.text_box = None
            return image
        bg_luma = rng.uniform(MIN_CONTRAST + 40, 255)
        text_luma = rng.uniform(0, bg_luma - MIN_CONTRAST - 20)
        per_char = self.drawn("colour_per_char")
        colors = [_color(rng, float(np.clip(text_luma + rng.uniform(-15, 15), 0, 255)))
                  for _ in range(len(text) if per_char else 1)]
        (_, min_h), (_, max_h) = VARIED_MIN_SIZE, VARIED_MAX_SIZE
        small_text = self.drawn("small_text")
        if small_text:
            height = float(np.exp(rng.uniform(np.log(SMALL_TEXT_MIN_HEIGHT), np.log(max_h))))
            text_share = max(rng.uniform(*SMALL_TEXT_SHARE), MIN_TEXT_HEIGHT / height)
        else:
            height = float(np.exp(rng.uniform(np.log(min_h), np.log(max_h))))
            text_share = min(0.95, max(rng.uniform(0.45, 0.85), MIN_TEXT_HEIGHT / height))
        hollow = self.drawn("hollow") and text_share * height >= MIN_HOLLOW_HEIGHT
        # filled outline glyphs: lighter inside than their line (sometimes as light as the background)
        fill = _color(rng, rng.uniform(text_luma + 60, 255)) if hollow and rng.random() < 0.35 else None
        coverage, text_color = self.text_layer(text, colors, text_share * height, fill, hollow)
        th, tw = coverage.shape
        width, height, scale_x, scale_y = self.size_for(height, text_share, th, tw, small_text)
        new_w, new_h = max(1, round(tw * scale_x)), max(1, round(th * scale_y))
        interpolation = cv2.INTER_AREA if scale_y < 1 else cv2.INTER_LINEAR
        coverage = cv2.resize(coverage, (new_w, new_h), interpolation=interpolation)
        text_color = colors[0] if text_color is None else cv2.resize(text_color, (new_w, new_h),
                                                                      interpolation=interpolation)
        left = int(rng.integers(0, width - new_w + 1))
        top = int(rng.integers(0, height - new_h + 1))
        self.text_box = (left, top, left + new_w, top + new_h)
        pixels = self.background(height, width, bg_luma)
        alpha = np.clip(coverage, 0, 1)[..., None] * rng.uniform(0.85, 1.0)
        region = pixels[top:top + new_h, left:left + new_w]
        pixels[top:top + new_h, left:left + new_w] = region * (1 - alpha) + text_color * alpha
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        self.noise(image, tuple(int(c) for c in colors[0]), self.text_box, hollow)
        speckle, image_warp = self.drawn("speckle"), self.drawn("image_warp")
        if speckle or image_warp:
            pixels = np.array(image)
            if speckle:
                self.speckle(pixels, colors[0])
            if image_warp:
                pixels = self.image_warp(pixels)
            image = Image.fromarray(pixels, "RGB")
        return self.degrade(image)

    def degrade(self, image: Image.Image) -> Image.Image:
        """Blur, JPEG artifacts and inversion, each sometimes."""
        rng = self.rng
        if self.drawn("blur"):
            if rng.random() < 0.7:
                image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.1)))
            else:
                image = image.filter(ImageFilter.SMOOTH)
        if self.drawn("jpeg"):
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(rng.integers(15, 60)))
            image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        if self.drawn("invert"):
            image = Image.fromarray(255 - np.asarray(image), "RGB")
        return image
