"""Reading a user's image as a person sees it, and turning it into the network's input.

Every image a user hands in (a file, bytes, an array) goes through `read_gray`: its size is checked
before its pixels are decoded, EXIF orientation is applied, 16-bit and float pixels are scaled
rather than clipped, and transparency is flattened onto a background that contrasts with the text.
"""

import io
import os
import stat

import cv2
import numpy as np
from PIL import Image, ImageOps

from cli import InputError
from hyperparameters import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, Hyperparams

Image.MAX_IMAGE_PIXELS = None  # our own limit, checked from the header, names the size in one line
Source = str | bytes | np.ndarray


def _check_file(path: str) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"image {path} does not exist") from None
    except OSError as error:
        raise InputError(f"cannot read image {path}: {error.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path} is a folder, not an image")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a regular file (a pipe, socket or device); give an image file")
    if info.st_size == 0:
        raise InputError(f"image {path} is empty")
    if info.st_size > MAX_IMAGE_BYTES:
        raise InputError(f"image {path} is {info.st_size} bytes, over the limit of {MAX_IMAGE_BYTES}")


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float images scaled to 8 bits over their range (convert('L') would clip)."""
    if not (image.mode.startswith("I") or image.mode == "F"):
        return image
    pixels = np.asarray(image, dtype=np.float64)
    peak = float(pixels.max()) if pixels.size else 0.0
    if image.mode.startswith("I;16"):
        top = 65535.0
    elif image.mode == "F" and peak <= 1.0:
        top = 1.0
    else:
        top = next(limit for limit in (255.0, 65535.0, max(peak, 1.0)) if peak <= limit)
    return Image.fromarray(np.clip(pixels * (255.0 / top), 0, 255).round().astype(np.uint8), "L")


def _flatten_alpha(image: Image.Image) -> np.ndarray:
    """Gray pixels of an image with transparency, laid on white, or on black when what is opaque is
    light (light text on a transparent background): the way the text stays visible."""
    rgba = image.convert("RGBA")
    pixels = np.asarray(rgba, dtype=np.float32)
    alpha = pixels[..., 3] / 255.0
    gray = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float32)
    opaque = alpha.sum()
    text_is_light = opaque > 0 and float((gray * alpha).sum() / opaque) > 127.5
    background = 0.0 if text_is_light else 255.0
    return np.clip(gray * alpha + background * (1 - alpha), 0, 255).round().astype(np.uint8)


def _decode(file, name: str, draft_size: tuple[int, int] | None, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    try:
        with Image.open(file) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(f"{name} is {width}x{height} pixels, over the limit of {max_pixels} pixels")
            if draft_size is not None and image.format == "JPEG":
                image.draft("L", draft_size)  # decode a large JPEG straight at a reduced scale
            image = ImageOps.exif_transpose(image)
            image = _to_8bit(image)
            if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
                return _flatten_alpha(image)
            return np.asarray(image.convert("L"))
    except InputError:
        raise
    except Image.UnidentifiedImageError:
        raise InputError(f"{name} is not a readable image (no format Pillow decodes)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        reason = "is truncated" if "truncated" in str(error) else f"cannot be decoded ({error})"
        raise InputError(f"{name} {reason}") from None


def read_gray(source: Source, name: str | None = None, draft_size: tuple[int, int] | None = None,
              max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image (a file path, encoded bytes, or a gray/RGB/RGBA uint8 array) as gray uint8 pixels,
    as a person sees it, or InputError. `draft_size` lets a JPEG decode at a reduced scale near it;
    `max_pixels` bounds its width x height (checked from the header, before decoding)."""
    if isinstance(source, np.ndarray):
        return _array_to_gray(source, name or "array", max_pixels)
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


def _array_to_gray(array: np.ndarray, name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise InputError(f"{name} has shape {array.shape}; give (height, width) gray or (height, width, 3|4) RGB(A)")
    if array.shape[0] * array.shape[1] > max_pixels:
        raise InputError(f"{name} has {array.shape[0] * array.shape[1]} pixels, over the limit of {max_pixels}")
    if array.dtype != np.uint8:
        raise InputError(f"{name} has dtype {array.dtype}; give uint8 pixels")
    mode = "L" if array.ndim == 2 else ("RGB" if array.shape[2] == 3 else "RGBA")
    image = Image.fromarray(np.ascontiguousarray(array), mode)
    return _flatten_alpha(image) if mode == "RGBA" else np.asarray(image.convert("L"))


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


def read_network_input(source: Source, hp: Hyperparams, name: str | None = None,
                       max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image straight to the network's (width, height) uint8 input: decoded, then resized at once,
    so a large image never stays in memory at full size."""
    draft = (hp.image_width * 2, hp.image_height * 2)
    return to_network_input(read_gray(source, name, draft, max_pixels), hp)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]."""
    return images.astype(np.float32) * np.float32(1 / 255)
