"""Images are read as a person sees them, and hostile ones are one clear error."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import MAX_IMAGE_PIXELS, Hyperparams
from lstm_ocr.images import read_gray, read_network_input


def _text_image(ink: int = 40, paper: int = 230) -> np.ndarray:
    """A light image with a dark bar in the middle: 'text' a reader must keep."""
    pixels = np.full((30, 80), paper, dtype=np.uint8)
    pixels[10:20, 20:60] = ink
    return pixels


def _saved(image: Image.Image, tmp_path, name: str, **options) -> str:
    path = str(tmp_path / name)
    image.save(path, **options)
    return path


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    gray16 = (_text_image().astype(np.uint16) * 257)
    path = _saved(Image.fromarray(gray16), tmp_path, "deep.png")
    assert Image.open(path).mode.startswith("I")
    assert np.abs(read_gray(path).astype(int) - _text_image()).max() <= 1


def test_dark_text_on_transparent_background_stays_readable(tmp_path):
    rgba = np.zeros((30, 80, 4), dtype=np.uint8)  # transparent black everywhere...
    rgba[10:20, 20:60, 3] = 255  # ...but opaque black text
    gray = read_gray(_saved(Image.fromarray(rgba, "RGBA"), tmp_path, "alpha.png"))
    assert gray[15, 40] < 50 and gray[2, 2] > 200  # dark text on a light page, not black on black


def test_light_text_on_transparent_background_stays_readable(tmp_path):
    rgba = np.zeros((30, 80, 4), dtype=np.uint8)
    rgba[10:20, 20:60] = 255  # opaque white text on transparent (black) pixels
    gray = read_gray(_saved(Image.fromarray(rgba, "RGBA"), tmp_path, "light.png"))
    assert gray[15, 40] > 200 and gray[2, 2] < 50


def test_exif_orientation_is_applied(tmp_path):
    upright = Image.fromarray(np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (30, 1)))  # dark left, light right
    stored = upright.transpose(Image.Transpose.ROTATE_180)
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotate 180 to display
    gray = read_gray(_saved(stored, tmp_path, "turned.jpg", exif=exif, quality=95))
    assert gray.shape == (30, 80) and gray[:, :10].mean() < gray[:, -10:].mean()


@pytest.mark.parametrize("save", [
    lambda image, path: image.convert("P").save(path + ".gif"),
    lambda image, path: image.save(path + ".bmp"),
    lambda image, path: image.save(path + ".webp", lossless=True),
    lambda image, path: image.save(path + ".tiff"),
    lambda image, path: image.convert("RGB").save(path + ".jpg", quality=95),
    lambda image, path: image.convert("LA").save(path + ".png"),
])
def test_every_common_format_and_mode_reads_the_same(tmp_path, save):
    save(Image.fromarray(_text_image()), str(tmp_path / "image"))
    (path,) = [str(tmp_path / name) for name in os.listdir(tmp_path)]
    assert np.abs(read_gray(path).astype(int) - _text_image()).max() <= 12


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file that declares a huge image (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + \
        chunk(b"IEND", b"")


def test_a_decompression_bomb_names_its_size_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(InputError, match=f"10000000000 pixels, over the limit of {MAX_IMAGE_PIXELS}"):
        read_gray(str(path))
    with pytest.raises(InputError, match="over the limit"):
        read_gray(path.read_bytes(), name="upload")
    path.write_bytes(_png_header_only(6000, 6000))  # past our limit, within Pillow's (twice ours)
    with pytest.raises(InputError, match=f"6000x6000 pixels, over the limit of {MAX_IMAGE_PIXELS}"):
        read_gray(str(path))


def test_a_fifo_is_not_called_missing(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_gray(str(fifo))  # and does not block waiting for a writer


def test_a_folder_and_a_missing_file_say_which(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        read_gray(str(tmp_path))
    with pytest.raises(InputError, match="does not exist"):
        read_gray(str(tmp_path / "nothing.png"))


@pytest.mark.parametrize("array, words", [
    (np.zeros((30, 80), dtype=np.float64), "dtype float64"),
    (np.zeros((30, 80, 2), dtype=np.uint8), "shape"),
    (np.zeros((0, 80), dtype=np.uint8), "shape"),
])
def test_bad_arrays_are_one_clear_error(array, words):
    with pytest.raises(InputError, match=words):
        read_gray(array)


def test_bytes_paths_and_arrays_give_the_same_network_input(tmp_path):
    image = Image.fromarray(_text_image())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path = _saved(image, tmp_path, "same.png")
    hp = Hyperparams()
    from_path = read_network_input(path, hp)
    assert from_path.shape == (hp.image_width, hp.image_height)
    assert np.array_equal(from_path, read_network_input(buffer.getvalue(), hp))
    assert np.array_equal(from_path, read_network_input(_text_image(), hp))
    rgb = np.repeat(_text_image()[..., None], 3, axis=2)
    assert np.array_equal(from_path, read_network_input(rgb, hp))


def test_a_large_image_is_resized_as_it_is_read(tmp_path):
    big = Image.fromarray(np.kron(_text_image(), np.ones((40, 40), dtype=np.uint8)))  # 3200x1200
    path = _saved(big.convert("RGB"), tmp_path, "big.jpg", quality=90)
    net = read_network_input(path, Hyperparams())
    small = read_network_input(_text_image(), Hyperparams())
    assert np.abs(net.astype(int) - small).mean() < 8


# Hardening round 3: formats outside the allowlist, bombs inside containers, memory per image, every mode.

@pytest.mark.parametrize("kind, options", [("ICO", {}), ("ICNS", {}), ("DDS", {}), ("BLP", {}), ("IM", {}),
                                           ("SPIDER", {})])
def test_formats_a_captcha_never_comes_in_are_refused_before_a_plugin_parses_them(tmp_path, kind, options):
    modes = {"SPIDER": "F", "IM": "L", "BLP": "P"}
    image = Image.fromarray(_text_image()).convert(modes.get(kind, "RGBA"))
    path = str(tmp_path / f"image.{kind.lower()}")
    if kind in ("ICO", "ICNS"):
        image = image.resize((32, 32))
    image.save(path, format=kind, **options)
    assert Image.open(path).format == kind  # Pillow itself would open it
    with pytest.raises(InputError, match=r"not a readable image in a format read here \(PNG, JPEG"):
        read_gray(path)
    with pytest.raises(InputError, match="not a readable image in a format read here"):
        read_gray(open(path, "rb").read(), name="upload")


def test_an_ico_holding_a_huge_png_is_refused_without_decoding(tmp_path):
    png = _png_header_only(40_000, 40_000)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 6 + 16)
    path = tmp_path / "bomb.ico"
    path.write_bytes(struct.pack("<HHH", 0, 1, 1) + entry + png)
    with pytest.raises(InputError, match="not a readable image in a format read here"):
        read_gray(str(path))


def test_pillows_own_bomb_check_stays_on_at_our_limit():
    from lstm_ocr import images  # noqa: F401  (its import sets the limit)

    assert Image.MAX_IMAGE_PIXELS == MAX_IMAGE_PIXELS


def test_a_large_rgba_image_is_shrunk_before_any_numpy_copy(tmp_path):
    import tracemalloc

    rgba = np.zeros((2000, 2000, 4), dtype=np.uint8)
    rgba[800:1200, 400:1600, 3] = 255  # opaque black text on transparent pixels
    path = _saved(Image.fromarray(rgba, "RGBA"), tmp_path, "big.png", compress_level=1)
    tracemalloc.start()
    try:
        net = read_network_input(path, Hyperparams())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # float copies of the full image took 64 MB
    assert net[40, 15] < 50 and net[5, 2] > 200  # dark text on white


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "RGBA", "P", "LA", "PA", "CMYK", "1", "RGB", "La", "YCbCr"])
def test_a_pil_image_of_any_mode_reads_as_its_file_does(tmp_path, mode):
    base = Image.fromarray(_text_image())
    if mode == "I;16":
        image = Image.fromarray(_text_image().astype(np.uint16) * 257)
    elif mode in ("I", "F"):
        image = Image.fromarray(_text_image().astype(np.int32) if mode == "I" else _text_image() / np.float32(255))
    elif mode in ("PA", "La"):
        image = base.convert("P").convert("PA") if mode == "PA" else base.convert("LA").convert("La")
    else:
        image = base.convert(mode)
    assert image.mode == mode
    direct = read_gray(image)
    assert np.abs(direct.astype(int) - _text_image()).max() <= 2 or mode == "1", mode
    if mode not in ("La", "PA", "YCbCr"):  # modes no allowed format stores
        kind = "TIFF" if mode in ("F", "CMYK", "I") else "PNG"
        path = _saved(image, tmp_path, f"image.{kind.lower()}", format=kind)
        assert np.array_equal(direct, read_gray(Image.open(path))) and np.array_equal(direct, read_gray(path))


def test_an_exif_rotated_pil_image_reads_as_its_file_does(tmp_path):
    upright = Image.fromarray(np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (30, 1)))
    exif = Image.Exif()
    exif[0x0112] = 3
    path = _saved(upright.transpose(Image.Transpose.ROTATE_180), tmp_path, "turned.jpg", exif=exif, quality=95)
    opened = Image.open(path)
    assert np.array_equal(read_gray(opened), read_gray(path))
    assert opened.size == (80, 30) and opened.getexif().get(0x0112) == 3  # the caller's image is untouched


def test_non_finite_float_pixels_are_one_image_not_a_crash():
    pixels = _text_image().astype(np.float32)
    pixels[0, 0], pixels[0, 1] = np.nan, np.inf
    gray = read_gray(Image.fromarray(pixels, "F"))
    assert gray.shape == (30, 80) and gray[15, 40] < gray[2, 2]


def _tiff_with_float_strip_offsets() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (20, 10), 128).save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack_from("<H", data, entry)[0] == 273:  # StripOffsets, now of type FLOAT
            struct.pack_into("<H", data, entry + 2, 11)
    return bytes(data)


def test_a_plugins_own_error_on_a_malformed_file_is_one_line(tmp_path):
    """Pillow's TIFF plugin raises TypeError on float strip offsets: any error a plugin raises while
    decoding is the file's error, never a traceback."""
    with pytest.raises(InputError, match="cannot be decoded .TypeError"):
        read_gray(_tiff_with_float_strip_offsets(), "float.tif")


def test_a_path_with_a_nul_is_an_input_error():
    with pytest.raises(InputError, match="NUL"):
        read_gray("a\0b.png")
