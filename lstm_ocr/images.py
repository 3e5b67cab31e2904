"""Reading a user's image as a person sees it, and turning it into the network's input.

Every image a user hands in (a file, bytes, an array, a PIL image) goes through `read_gray`: only the
formats a captcha comes in are opened (ALLOWED_FORMATS; ICO, ICNS, DDS, BLP, IM, SPIDER and the rest
are refused before a plugin parses them), its size is checked from the header before its pixels are
decoded (Pillow's own bomb check stays on at our limit, so that its plugins check too), EXIF orientation
is applied, a large image is shrunk by a whole factor as soon as it is decoded (the copies that follow
are small), 16-bit and float pixels are scaled rather than clipped, and transparency is flattened onto
a background that contrasts with the text, in integer arithmetic (no float copy of a full-size image).
"""

import io
import os
import re
import stat
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps

from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, Hyperparams

# Pillow warns past this many pixels and refuses past twice as many, in Image.open and inside plugins
# that open frames of their own; our own limit (checked first, from the header) names the size.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Its warning (between our limit and twice it) never reaches a user: our check refuses those images with
# their size. Set once here: warnings.catch_warnings() per image is not thread-safe (the service).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# The formats a captcha comes in; Image.open tries no other plugin.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
Source = str | bytes | np.ndarray


def allowed_extensions() -> set[str]:
    """File extensions (lower case, with the dot) of ALLOWED_FORMATS."""
    return {ext for ext, kind in Image.registered_extensions().items() if kind in ALLOWED_FORMATS}


def _check_file(path: str) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"image {path} does not exist") from None
    except OSError as error:
        raise InputError(f"cannot read image {path}: {error.strerror}") from None
    except ValueError:  # a NUL in the path
        raise InputError(f"image path {path!r} holds a NUL character: no file has such a name") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path} is a folder, not an image")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a regular file (a pipe, socket or device); give an image file")
    if info.st_size == 0:
        raise InputError(f"image {path} is empty")
    if info.st_size > MAX_IMAGE_BYTES:
        raise InputError(f"image {path} is {info.st_size} bytes, over the limit of {MAX_IMAGE_BYTES}")


def _check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(f"{name} is {width}x{height} pixels, over the limit of {max_pixels} pixels")


def _shrink(image: Image.Image, draft_size: tuple[int, int] | None) -> Image.Image:
    """The image reduced by a whole factor (a box filter) while it stays at least `draft_size`, so
    that every copy made after the decode is small; 16-bit, bilevel and palette images are first put
    in a mode Pillow can reduce."""
    if draft_size is None:
        return image
    factor = min(image.width // max(1, draft_size[0]), image.height // max(1, draft_size[1]))
    if factor < 2:
        return image
    if image.mode.startswith("I;16"):
        image = image.convert("I")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode == "P":
        image = image.convert("LA" if "transparency" in image.info else "L")
    return image.reduce(factor)


def _to_8bit(image: Image.Image, sixteen_bit: bool) -> Image.Image:
    """32-bit and float images (and 16-bit ones, `sixteen_bit`) scaled to 8 bits over their range
    (convert('L') would clip)."""
    if not (image.mode.startswith("I") or image.mode == "F"):
        return image
    pixels = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(pixels)
    if not finite.all():  # NaN or infinite float pixels: black, not a crash
        pixels = np.where(finite, pixels, 0)
    peak = float(pixels.max()) if pixels.size else 0.0
    if sixteen_bit:
        top = 65535.0
    elif image.mode == "F" and peak <= 1.0:
        top = 1.0
    else:
        top = next(limit for limit in (255.0, 65535.0, max(peak, 1.0)) if peak <= limit)
    return Image.fromarray(np.clip(pixels * np.float32(255.0 / top), 0, 255).round().astype(np.uint8), "L")


def _flatten_alpha(image: Image.Image) -> np.ndarray:
    """Gray pixels of an image with transparency, laid on white, or on black when what is opaque is
    light (light text on a transparent background): the way the text stays visible. Integer arithmetic
    on 16-bit copies."""
    pair = np.asarray(image.convert("LA"))
    gray, alpha = pair[..., 0].astype(np.uint16), pair[..., 1].astype(np.uint16)
    opaque = int(alpha.sum(dtype=np.uint64))
    weighted = gray * alpha  # at most 255 * 255: fits 16 bits
    text_is_light = opaque > 0 and int(weighted.sum(dtype=np.uint64)) > 127.5 * opaque
    if not text_is_light:
        weighted += 255 * (255 - alpha)
    weighted += 127
    return (weighted // 255).astype(np.uint8)


def _gray(image: Image.Image, draft_size: tuple[int, int] | None, in_place: bool) -> np.ndarray:
    """Any PIL image, upright (its EXIF orientation), shrunk, as gray uint8 pixels."""
    transposed = ImageOps.exif_transpose(image, in_place=in_place)
    image = image if transposed is None else transposed
    sixteen_bit = image.mode.startswith("I;16")
    image = _to_8bit(_shrink(image, draft_size), sixteen_bit)
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        return _flatten_alpha(image)
    if image.mode == "LAB":
        return np.asarray(image.getchannel("L"))
    return np.asarray(image.convert("L"))


def _decode(file, name: str, draft_size: tuple[int, int] | None, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    try:
        with Image.open(file, formats=ALLOWED_FORMATS) as image:
            _check_pixels(image, name, max_pixels)
            if draft_size is not None and image.format == "JPEG":
                image.draft("L", draft_size)  # decode a large JPEG straight at a reduced scale
            return _gray(image, draft_size, in_place=True)
    except InputError:
        raise
    except Image.DecompressionBombError as error:  # Pillow's own check, past twice our limit
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{found.group(1)} pixels" if found else "too many pixels"
        raise InputError(f"{name} has {size}, over the limit of {min(max_pixels, MAX_IMAGE_PIXELS)} pixels "
                         "(a decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{name} is not a readable image in a format read here ({', '.join(ALLOWED_FORMATS)}); "
                         "convert it to PNG") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as error:
        reason = "is truncated" if "truncated" in str(error) else f"cannot be decoded ({error})"
        raise InputError(f"{name} {reason}") from None
    except Exception as error:  # a plugin's own bug on a malformed file (TIFF float offsets: TypeError)
        raise InputError(f"{name} cannot be decoded ({type(error).__name__}: {str(error)[:200]})") from None


def read_gray(source: "Source | Image.Image", name: str | None = None, draft_size: tuple[int, int] | None = None,
              max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image (a file path, encoded bytes, a gray/RGB/RGBA uint8 array, or a PIL image of any mode)
    as gray uint8 pixels, as a person sees it, or InputError. `draft_size` lets a large image decode or
    shrink to a whole fraction of its size that stays at least that large; `max_pixels` bounds its
    width x height (checked from the header, before decoding)."""
    if isinstance(source, Image.Image):
        return read_pil(source, name or "the PIL image", draft_size, max_pixels)
    if isinstance(source, np.ndarray):
        return _array_to_gray(source, name or "array", max_pixels, draft_size)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        name = name or "image"
        if not data:
            raise InputError(f"{name} is empty")
        if len(data) > MAX_IMAGE_BYTES:
            raise InputError(f"{name} is {len(data)} bytes, over the limit of {MAX_IMAGE_BYTES}")
        return _decode(io.BytesIO(data), name, draft_size, max_pixels)
    path = os.fspath(source)
    _check_file(path)
    return _decode(path, name or path, draft_size, max_pixels)


def read_pil(image: Image.Image, name: str, draft_size: tuple[int, int] | None = None,
             max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A PIL image a caller opened, of any mode, read as the same file would be (its EXIF orientation
    applied; the caller's image is left as it was)."""
    _check_pixels(image, name, max_pixels)
    if 0 in image.size:
        raise InputError(f"{name} has no pixels ({image.width}x{image.height})")
    try:
        return _gray(image, draft_size, in_place=False)
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as error:
        raise InputError(f"{name} cannot be read ({error})") from None
    except Exception as error:  # a plugin's own bug on a malformed file
        raise InputError(f"{name} cannot be read ({type(error).__name__}: {str(error)[:200]})") from None


def _array_to_gray(array: np.ndarray, name: str, max_pixels: int = MAX_IMAGE_PIXELS,
                   draft_size: tuple[int, int] | None = None) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise InputError(f"{name} has shape {array.shape}; give (height, width) gray or (height, width, 3|4) RGB(A)")
    if array.shape[0] * array.shape[1] > max_pixels:
        raise InputError(f"{name} has {array.shape[0] * array.shape[1]} pixels, over the limit of {max_pixels}")
    if array.dtype != np.uint8:
        raise InputError(f"{name} has dtype {array.dtype}; give uint8 pixels")
    mode = "L" if array.ndim == 2 else ("RGB" if array.shape[2] == 3 else "RGBA")
    return _gray(Image.fromarray(np.ascontiguousarray(array), mode), draft_size, in_place=True)


def to_network_input(gray: np.ndarray, hp: Hyperparams) -> np.ndarray:
    """A grayscale uint8 image of any size as the network reads it: (width, height) uint8. With
    `hp.fit` "stretch" it is resized to that size; with "pad" it keeps its aspect ratio, scaled to
    fit and centred on the median gray of its own border."""
    width, height = hp.image_width, hp.image_height
    if hp.fit == "stretch":
        return cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA
                          if gray.shape[1] > 2 * width else cv2.INTER_LINEAR).transpose(1, 0)
    scale = min(width / gray.shape[1], height / gray.shape[0])
    new_w = min(width, max(1, round(gray.shape[1] * scale)))
    new_h = min(height, max(1, round(gray.shape[0] * scale)))
    small = cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR)
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    canvas = np.full((height, width), np.median(border), dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = small
    return canvas.transpose(1, 0)


def read_network_input(source: "Source | Image.Image", hp: Hyperparams, name: str | None = None,
                       max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image straight to the network's (width, height) uint8 input: decoded, then resized at once,
    so a large image never stays in memory at full size."""
    draft = (hp.image_width * 2, hp.image_height * 2)
    return to_network_input(read_gray(source, name, draft, max_pixels), hp)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]."""
    return images.astype(np.float32) * np.float32(1 / 255)
