"""The `varied` captcha style: a wide, randomized family of looks, drawn by this project's own code
with Pillow, NumPy and OpenCV, mixed with the example's look. Fully reproducible from a seed.

Every image picks, from its own random draws: a size from about 50x20 to 300x100; fonts (one per
image or one per character); text and background colours (solid, gradient, texture or noise
backgrounds, light text on dark by inversion); per-character size, rotation, slant, spacing and
overlap; a baseline wave and an elastic warp of the whole text; strike lines, arcs, curves and dots;
blur and JPEG artifacts. A share of the images (VARIED_EXAMPLE_SHARE) is the example's own look, the
captcha package's, drawn with its randomness taken from our seeded generator.
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
    """Renders texts in the varied style; `render` returns an RGB image of a random size."""

    def __init__(self, font_paths: list[str], seed: int | None = None):
        self.rng = np.random.default_rng(None if seed is None else [seed, 1])
        self.example_rng = random.Random(int(self.rng.integers(2**63)))
        self.fonts = [ImageFont.truetype(path, GLYPH_SIZE) for path in font_paths]
        self.glyphs: dict[tuple[int, str], tuple[np.ndarray, int]] = {}
        # The example's look at its own size (the example network's image, drawn at RENDER_SCALE:
        # 160x60), whatever this network's input size: the captcha package sizes its glyphs in
        # pixels, so a larger canvas would draw a look of smaller text that no held-out set has.
        example = Hyperparams()
        self.example = captcha_image.ImageCaptcha(width=example.image_width * RENDER_SCALE,
                                                  height=example.image_height * RENDER_SCALE, fonts=font_paths)

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

    def text_layer(self, text: str, colors: list[np.ndarray], height: float) -> tuple[np.ndarray, np.ndarray | None]:
        """The text's coverage (h, w) and, with several colours, its colour (h, w, 3), cropped to the
        ink, about `height` pixels high or somewhat more (drawn at glyph scale, shrunk before the warps)."""
        rng = self.rng
        one_font = rng.random() < 0.7
        font = int(rng.integers(len(self.fonts)))
        max_rotation = rng.choice([0.0, rng.uniform(0, 12), rng.uniform(10, 35)])
        slant = rng.uniform(-0.3, 0.3) if rng.random() < 0.3 else 0.0
        size_jitter = rng.uniform(0, 0.25)
        spacing = rng.uniform(-0.25, 0.35)
        jitter_y = rng.uniform(0, 0.12) * GLYPH_SIZE
        wave = rng.uniform(0, 0.15) * GLYPH_SIZE if rng.random() < 0.4 else 0.0
        wave_period, wave_phase = rng.uniform(2, 6), rng.uniform(0, 2 * np.pi)
        placed = []
        x = 0.0
        for index, char in enumerate(text):
            mask, baseline = self.glyph(font if one_font else int(rng.integers(len(self.fonts))), char)
            scale = 1 + rng.uniform(-size_jitter, size_jitter)
            angle = np.radians(rng.uniform(-max_rotation, max_rotation))
            shear = slant + rng.uniform(-0.05, 0.05)
            cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
            linear = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, -shear], [0, 1]])
            h, w = mask.shape
            corners = linear @ np.array([[0, w, 0, w], [0, 0, h, h]], dtype=np.float64)
            low = corners.min(axis=1)
            size = np.ceil(corners.max(axis=1) - low).astype(int) + 1
            matrix = np.hstack([linear, -low[:, None]])
            warped = cv2.warpAffine(mask, matrix, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR)
            anchor = linear @ np.array([w / 2, baseline]) - low  # the baseline's middle, after the transform
            y = wave * np.sin(index / wave_period * 2 * np.pi + wave_phase) + rng.uniform(-jitter_y, jitter_y)
            placed.append((warped, x, y - anchor[1], colors[index % len(colors)]))
            x += size[0] + spacing * GLYPH_SIZE * 0.5 * scale
        top = min(p[2] for p in placed)
        layer_w = int(np.ceil(max(p[1] + p[0].shape[1] for p in placed))) + 1
        layer_h = int(np.ceil(max(p[2] + p[0].shape[0] for p in placed) - top)) + 1
        coverage = np.zeros((layer_h, layer_w), dtype=np.float32)
        color = np.zeros((layer_h, layer_w, 3), dtype=np.float32) if len(colors) > 1 else None
        for warped, left, row, char_color in placed:
            r, c = int(round(row - top)), int(round(left))
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
        return self.warp(coverage, color, GLYPH_SIZE * shrink)

    def warp(self, coverage: np.ndarray, color: np.ndarray | None,
             unit: float) -> tuple[np.ndarray, np.ndarray | None]:
        """An elastic warp and a wave of the whole text layer (each sometimes), cropped to the ink;
        `unit` is the glyph size in the layer's pixels."""
        rng = self.rng
        h, w = coverage.shape
        if rng.random() < 0.5:
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
                 text_width: int) -> tuple[int, int, float, float]:
        """The image's (width, height) and the text's scale (x, y) to fit it, within the size range:
        the text takes `text_share` of the drawn `height` unless the width is too short for it."""
        rng = self.rng
        (min_w, min_h), (max_w, max_h) = VARIED_MIN_SIZE, VARIED_MAX_SIZE
        scale_y = text_share * height / text_height
        scale_x = scale_y * rng.uniform(0.75, 1.3)
        margin = rng.uniform(0.05, 0.5) * height
        width = int(np.clip(round(text_width * scale_x + 2 * margin), min_w, max_w))
        height = int(np.clip(round(min(height, width / 1.2)), min_h, max_h))
        fit = min(1.0, (width - 2) / (text_width * scale_x), (height - 2) / (text_height * scale_y))
        return width, height, scale_x * fit, scale_y * fit

    def background(self, height: int, width: int, luma: float) -> np.ndarray:
        """A (height, width, 3) float32 background of gray level about `luma`: solid, gradient,
        texture or noise."""
        rng = self.rng
        kind = rng.choice(["solid", "gradient", "texture", "noise"])
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
        else:
            grain = rng.normal(0, rng.uniform(8, 30), (height, width, 1 if rng.random() < 0.5 else 3))
            return np.clip(first + grain, 0, 255).astype(np.float32)
        return (first + (second - first) * t[..., None]).astype(np.float32)

    def noise(self, image: Image.Image, text_color: tuple, box: tuple[int, int, int, int]) -> None:
        """Strike lines, arcs, curves and dots drawn over the image, in the text's or other colours;
        `box` is the text's (left, top, right, bottom)."""
        rng = self.rng
        draw = ImageDraw.Draw(image)
        width, height = image.size
        left, top, right, bottom = box
        thick = max(1, round(height / 25))

        def color() -> tuple:
            return text_color if rng.random() < 0.6 else tuple(int(c) for c in rng.integers(0, 256, 3))

        for _ in range(int(rng.choice([0, 0, 1, 2, 3]))):  # strike lines through the text
            y0, y1 = rng.uniform(top, bottom, 2)
            draw.line([(rng.uniform(0, left + 1), y0), (rng.uniform(right - 1, width), y1)], fill=color(),
                      width=int(rng.integers(1, thick + 2)))
        for _ in range(int(rng.choice([0, 0, 1, 2]))):  # arcs
            x0, y0 = rng.uniform(-width / 2, width / 2), rng.uniform(-height / 2, height / 2)
            x1, y1 = x0 + rng.uniform(width / 3, width * 1.2), y0 + rng.uniform(height / 2, height * 1.5)
            start = rng.uniform(0, 360)
            draw.arc([x0, y0, x1, y1], start, start + rng.uniform(60, 300), fill=color(),
                     width=int(rng.integers(1, thick + 2)))
        if rng.random() < 0.3:  # a wavy curve across the image
            xs = np.linspace(0, width, 24)
            ys = height / 2 + rng.uniform(0.1, 0.35) * height * np.sin(xs / width * rng.uniform(2, 9)
                                                                         + rng.uniform(0, 6.3))
            draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=color(),
                      width=int(rng.integers(1, thick + 2)))
        if rng.random() < 0.3:  # a smooth curve through the text, as wide as its strokes, in its colour
            stroke = max(1, round((bottom - top) * rng.uniform(0.06, 0.14)))
            knots = rng.uniform(top, bottom, (1, int(rng.integers(3, 7)))).astype(np.float32)
            ys = cv2.resize(knots, (24, 1), interpolation=cv2.INTER_CUBIC)[0]
            xs = np.linspace(rng.uniform(0, left + 1), rng.uniform(right - 1, width), 24)
            draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=text_color, width=stroke, joint="curve")
        if rng.random() < 0.5:  # dots
            radius = rng.uniform(0.5, max(1.0, height / 30))
            dots = int(rng.integers(5, 10 + width * height / (100 * max(1.0, radius) ** 2)))
            dot_color = color() if rng.random() < 0.7 else image.getpixel((0, 0))  # or holes in the strokes
            for x, y in zip(rng.uniform(0, width, dots), rng.uniform(0, height, dots), strict=True):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=dot_color)

    def render(self, text: str) -> Image.Image:
        """The RGB captcha of `text`, in a look drawn at random."""
        rng = self.rng
        if rng.random() < VARIED_EXAMPLE_SHARE:
            with _seeded_captcha(self.example_rng):
                image = self.example.generate_image(text)
            if rng.random() < 0.5:  # the example's look, at another size and aspect ratio
                (min_w, min_h), (max_w, max_h) = VARIED_MIN_SIZE, VARIED_MAX_SIZE
                height = int(np.exp(rng.uniform(np.log(min_h), np.log(max_h))))
                width = int(np.clip(height * rng.uniform(1.8, 3.6), min_w, max_w))
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            return image
        bg_luma = rng.uniform(MIN_CONTRAST + 40, 255)
        text_luma = rng.uniform(0, bg_luma - MIN_CONTRAST - 20)
        per_char = rng.random() < 0.25
        colors = [_color(rng, float(np.clip(text_luma + rng.uniform(-15, 15), 0, 255)))
                  for _ in range(len(text) if per_char else 1)]
        (_, min_h), (_, max_h) = VARIED_MIN_SIZE, VARIED_MAX_SIZE
        height = float(np.exp(rng.uniform(np.log(min_h), np.log(max_h))))
        text_share = min(0.95, max(rng.uniform(0.45, 0.85), MIN_TEXT_HEIGHT / height))
        coverage, text_color = self.text_layer(text, colors, text_share * height)
        th, tw = coverage.shape
        width, height, scale_x, scale_y = self.size_for(height, text_share, th, tw)
        new_w, new_h = max(1, round(tw * scale_x)), max(1, round(th * scale_y))
        interpolation = cv2.INTER_AREA if scale_y < 1 else cv2.INTER_LINEAR
        coverage = cv2.resize(coverage, (new_w, new_h), interpolation=interpolation)
        text_color = colors[0] if text_color is None else cv2.resize(text_color, (new_w, new_h),
                                                                      interpolation=interpolation)
        left = int(rng.integers(0, width - new_w + 1))
        top = int(rng.integers(0, height - new_h + 1))
        pixels = self.background(height, width, bg_luma)
        alpha = np.clip(coverage, 0, 1)[..., None] * rng.uniform(0.85, 1.0)
        region = pixels[top:top + new_h, left:left + new_w]
        pixels[top:top + new_h, left:left + new_w] = region * (1 - alpha) + text_color * alpha
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        self.noise(image, tuple(int(c) for c in colors[0]), (left, top, left + new_w, top + new_h))
        return self.degrade(image)

    def degrade(self, image: Image.Image) -> Image.Image:
        """Blur, JPEG artifacts and inversion, each sometimes."""
        rng = self.rng
        if rng.random() < 0.3:
            image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.1)))
        elif rng.random() < 0.2:
            image = image.filter(ImageFilter.SMOOTH)
        if rng.random() < 0.3:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(rng.integers(15, 60)))
            image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        if rng.random() < VARIED_INVERT_SHARE:
            image = Image.fromarray(255 - np.asarray(image), "RGB")
        return image
