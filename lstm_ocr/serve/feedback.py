"""The service's feedback loop: recent images kept by reading id, filed into a labelled folder when the
client says what the right text was (`POST /feedback`).

Each reading's image is kept in memory for at most `keep_seconds`, at most `keep_count` of them and
`keep_bytes` in all (the oldest go first). A confirmed reading is written as `NNNNNN_TEXT.EXT` into the
`--collect` folder, the naming `lstm_ocr_train.py --train_dir` reads (labelled_data.py); the client
never names a path, the text must be in the model's alphabet, the same image is filed once, and the
folder's size is capped (`max_bytes`, counting what is already there).
"""

import hashlib
import io
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from lstm_ocr.cli import InputError

EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}
NUMBERED = re.compile(r"^(\d+)_")


class FeedbackError(Exception):
    """A feedback that cannot be filed; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Kept:
    data: bytes
    text: str
    since: float


class FeedbackStore:
    """Recent images by reading id, and the folder confirmed ones are filed into."""

    def __init__(self, folder: str, alphabet: str, keep_seconds: float, keep_count: int, keep_bytes: int,
                 max_bytes: int, fold: Callable[[str], str] = str):
        self.folder, self.alphabet, self.fold = folder, alphabet, fold
        self.keep_seconds, self.keep_count, self.keep_bytes, self.max_bytes = (keep_seconds, keep_count, keep_bytes,
                                                                               max_bytes)
        try:
            os.makedirs(folder, exist_ok=True)
            names = [entry for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)]
        except OSError as error:
            raise InputError(f"--collect {folder}: {error.strerror or error}") from None
        self.used = sum(entry.stat(follow_symlinks=False).st_size for entry in names)
        numbers = [int(match.group(1)) for entry in names if (match := NUMBERED.match(entry.name))]
        self.next_number = max(numbers, default=0) + 1
        self._filed: set[str] = set()  # digests of the images filed by this run
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._kept_bytes = 0
        self._lock = threading.Lock()
        self.filed = 0

    def keep(self, data: bytes, text: str) -> str:
        """A new reading id for `data` read as `text`, kept for a while."""
        reading_id = uuid.uuid4().hex
        with self._lock:
            self._expire(time.monotonic())
            if len(data) <= self.keep_bytes:
                self._kept[reading_id] = _Kept(data, text, time.monotonic())
                self._kept_bytes += len(data)
                while len(self._kept) > self.keep_count or self._kept_bytes > self.keep_bytes:
                    self._kept_bytes -= len(self._kept.popitem(last=False)[1].data)
        return reading_id

    def _expire(self, now: float) -> None:
        while self._kept and now - next(iter(self._kept.values())).since > self.keep_seconds:
            self._kept_bytes -= len(self._kept.popitem(last=False)[1].data)

    def label(self, text: str) -> str:
        """`text` in the model's case (folded as /read folds it, for a case-folding model), checked as a
        label: in the model's alphabet, so also safe in a file name."""
        text = self.fold(text)
        if not text or len(text) > 64 or any(c not in self.alphabet for c in text):
            raise FeedbackError(400, f"text must be 1 to 64 characters of the model's alphabet {self.alphabet!r}, "
                                     f"got {text[:80]!r}")
        return text

    def file(self, reading_id: str, correct: bool, text: str | None) -> str | None:
        """File the image of `reading_id` under its right text (the reading's if `correct`, else `text`):
        the new file's name, or None when a wrong reading comes without the right text (nothing learnt)."""
        label = self.label(text) if text is not None else None
        with self._lock:
            self._expire(time.monotonic())
            kept = self._kept.pop(reading_id, None)
            if kept is None:
                raise FeedbackError(404, f"no image kept for id {reading_id[:40]!r}: unknown, already answered, or "
                                         f"older than {self.keep_seconds:g} s")
            self._kept_bytes -= len(kept.data)
            if correct:
                if label is not None and label != kept.text:
                    raise FeedbackError(400, f"correct is true but text {label!r} differs from the reading "
                                             f"{kept.text!r}")
                label = self.label(kept.text)
            elif label is None:
                return None
            digest = hashlib.sha256(kept.data).hexdigest()
            if digest in self._filed:
                return None
            if self.used + len(kept.data) > self.max_bytes:
                raise FeedbackError(507, f"the --collect folder holds {self.used} bytes, at its limit of "
                                         f"{self.max_bytes}: move its images away (to train on them) to collect more")
            name = f"{self.next_number:06d}_{label}{extension(kept.data)}"
            path = os.path.join(self.folder, name)
            try:
                with open(path, "xb") as file:  # never replaces a file
                    file.write(kept.data)
            except OSError as error:
                raise FeedbackError(507, f"cannot write into the --collect folder: {error.strerror or error}") from None
            self.next_number += 1
            self.used += len(kept.data)
            self._filed.add(digest)
            self.filed += 1
            return name


def extension(data: bytes) -> str:
    """The file extension of an encoded image's format (.png if Pillow does not say)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return EXTENSIONS.get(image.format or "", ".png")
    except Exception:  # a kept image was readable; this only guards a name
        return ".png"
