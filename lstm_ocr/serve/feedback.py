"""The service's feedback loop: recent images kept by reading id, filed into a labelled folder when the
client says what the right text was (`POST /feedback`).

Each reading's image is kept in memory for at most `keep_seconds`, at most `keep_count` of them and
`keep_bytes` in all (the oldest go first). A confirmed reading is written into the `--collect` folder
as `NNNNNN.EXT` (`NNNNNN_TEXT.EXT` when TEXT is plain letters and digits) and its text is put in the
folder's `labels.csv`, which `lstm_ocr_train.py --train_dir` reads (labelled_data.py): any text of the
model's alphabet (`/`, `_`, `.`, any script) reads back exactly, whatever a file name could hold.
The client never names a path, the text must be in the model's alphabet, the same image is filed
once, and the folder's size is capped (`max_bytes`, counting what is already there).

Writes are atomic and safe with two servers on one folder: under an exclusive lock on the folder,
the image goes to a temporary file (O_EXCL, O_NOFOLLOW), is linked to the first free number (a
number is never reused, nothing is replaced, no planted link is written through), and labels.csv is
rewritten whole and renamed into place; a failed write leaves neither the image nor a half file. A
feedback refused for a reason of the server's (a full disk, a full folder) keeps its image, so the
client may retry.

With `unlabelled_count` N > 0, the images no feedback came for (expired, pushed out by the bounds, or
still held when the service stops) go into `DIR/unlabelled/` as `NNNNNN.EXT`, the folder
`lstm_ocr_train.py --unlabelled_dir` self-trains on (UnlabelledWriter): at most N images there and half
of `max_bytes` (both counting what is there at start), so confirmed readings always have the other
half; each image once a run. One thread writes them (never the event loop), with the same care.
"""

import csv
import errno
import fcntl
import hashlib
import io
import itertools
import logging
import os
import re
import stat
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PIL import Image

from lstm_ocr import labelled_data
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import MAX_LABELS_BYTES

EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}
NUMBERED = re.compile(r"^(\d+)(?:[_.]|$)")
MAX_TEXT = 64  # characters of a filed text (the /feedback schema's bound too)
PLAIN = re.compile(r"[0-9A-Za-z]+")  # a text (checked by label(): at most MAX_TEXT) that may also stand in a file name
LOCK_NAME = ".labels.lock"
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
UNLABELLED = "unlabelled"  # the subfolder of DIR that images without feedback go into
PENDING_BYTES = 32 << 20  # images waiting for the unlabelled writer at most; past it they are dropped
FLUSH_SECONDS = 10.0  # how long stopping the service may spend writing the images still held

log = logging.getLogger(__name__)


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
    answered: bool = False  # a /feedback named it: it never goes into the unlabelled folder


class FeedbackStore:
    """Recent images by reading id, and the folder confirmed ones are filed into."""

    def __init__(self, folder: str, alphabet: str, keep_seconds: float, keep_count: int, keep_bytes: int,
                 max_bytes: int, fold: Callable[[str], str] = str, unlabelled_count: int = 0):
        self.folder, self.alphabet, self.fold = folder, alphabet, fold
        self.keep_seconds, self.keep_count, self.keep_bytes, self.max_bytes = (keep_seconds, keep_count, keep_bytes,
                                                                               max_bytes)
        try:
            os.makedirs(folder, exist_ok=True)
            names = [entry for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)]
        except OSError as error:
            raise InputError(f"--collect {folder}: {error.strerror or error}") from None
        self.used = sum(entry.stat(follow_symlinks=False).st_size for entry in names)
        self._numbers = _numbers_after(names)
        found = labelled_data.labels_file(folder)  # InputError for one that cannot be read
        if found is not None and os.path.islink(found):
            raise InputError(f"--collect {folder}: its {os.path.basename(found)} is a link; the service rewrites "
                             "that file in place, so it must be a file of the folder's own")
        self.labels_path = found or os.path.join(folder, labelled_data.LABELS_CSV)
        self.delimiter = labelled_data.LABEL_FILES[os.path.basename(self.labels_path)]
        if found is None:  # the images already there keep the labels their names give them
            images = sorted(entry.name for entry in names if labelled_data.is_image_name(entry.name))
            rows = [(name, text) for name in images if (text := labelled_data.name_label(name))]
            if rows:
                try:
                    with self._folder_lock():
                        self._write_labels([labelled_data.HEADER, *rows])
                except OSError as error:
                    raise InputError(f"--collect {folder}: cannot write {labelled_data.LABELS_CSV}: "
                                     f"{error.strerror or error}") from None
        self._filed: set[str] = set()  # digests of the images filed by this run
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._kept_bytes = 0
        self._lock = threading.Lock()
        self.filed = 0
        self.unlabelled = (UnlabelledWriter(os.path.join(folder, UNLABELLED), unlabelled_count, max_bytes // 2)
                           if unlabelled_count > 0 else None)

    def keep(self, data: bytes, text: str) -> str:
        """A new reading id for `data` read as `text`, kept for a while."""
        reading_id = uuid.uuid4().hex
        with self._lock:
            self._expire(time.monotonic())
            if len(data) <= self.keep_bytes:
                self._kept[reading_id] = _Kept(data, text, time.monotonic())
                self._kept_bytes += len(data)
                while len(self._kept) > self.keep_count or self._kept_bytes > self.keep_bytes:
                    self._leave()
        return reading_id

    def _expire(self, now: float) -> None:
        while self._kept and now - next(iter(self._kept.values())).since > self.keep_seconds:
            self._leave()

    def _leave(self, bounded: bool = True) -> None:
        """The oldest kept image leaves memory, for the unlabelled folder if no feedback came for it."""
        kept = self._kept.popitem(last=False)[1]
        self._kept_bytes -= len(kept.data)
        if self.unlabelled is not None and not kept.answered:
            self.unlabelled.offer(kept.data, self.max_bytes - self.used, bounded)

    def close(self, seconds: float = FLUSH_SECONDS) -> None:
        """At shutdown: the images still held without feedback go to the unlabelled folder, written
        within `seconds` (what is left then is dropped)."""
        if self.unlabelled is None:
            return
        with self._lock:
            while self._kept:
                self._leave(bounded=False)  # their memory is held already: the pending bound is not needed
        self.unlabelled.close(seconds)

    def label(self, text: str) -> str:
        """`text` in the model's case (folded as /read folds it, for a case-folding model), checked as a
        label: in the model's alphabet, and one the labels file gives back exactly."""
        text = self.fold(text)
        if not text or len(text) > MAX_TEXT or any(c not in self.alphabet for c in text):
            raise FeedbackError(400, f"text must be 1 to {MAX_TEXT} characters of the model's alphabet "
                                     f"{self.alphabet!r}, got {text[:80]!r}")
        if not labelled_data.survives_labels_file(text, self.delimiter):
            raise FeedbackError(400, f"text {text!r} would not read back from {labelled_data.LABELS_CSV} as it is "
                                     "(spaces at its ends, or a NUL)")
        return text

    def file(self, reading_id: str, correct: bool, text: str | None) -> str | None:
        """File the image of `reading_id` under its right text (the reading's if `correct`, else `text`):
        the new file's name, or None when a wrong reading comes without the right text (nothing learnt).
        A FeedbackError of the client's (400) or of the server's (507) keeps the image for a retry."""
        with self._lock:
            if (named := self._kept.get(reading_id)) is not None:
                named.answered = True  # whatever comes of this answer, it is not an image without feedback
        label = self.label(text) if text is not None else None
        with self._lock:
            self._expire(time.monotonic())
            kept = self._kept.get(reading_id)
            if kept is None:
                raise FeedbackError(404, f"no image kept for id {reading_id[:40]!r}: unknown, already answered, or "
                                         f"older than {self.keep_seconds:g} s")
            if correct:
                if label is not None and label != kept.text:
                    raise FeedbackError(400, f"correct is true but text {label!r} differs from the reading "
                                             f"{kept.text!r}")
                label = self.label(kept.text)
            elif label is None:
                self._forget(reading_id)
                return None
            digest = hashlib.sha256(kept.data).hexdigest()
            if digest in self._filed:
                self._forget(reading_id)
                return None
            held = self.used + (self.unlabelled.used if self.unlabelled else 0)
            if held + len(kept.data) > self.max_bytes:
                raise FeedbackError(507, f"the --collect folder holds {held} bytes, at its limit of "
                                         f"{self.max_bytes}: move its images away (to train on them) to collect more")
            self._forget(reading_id)  # taken while it is written: a second answer for it is a 404
        try:  # outside the lock: the folder's lock and the disk never hold up keep() (the event loop)
            name = self._write(kept.data, label)
        except OSError as error:
            with self._lock:  # kept again, for a retry
                self._kept[reading_id] = kept
                self._kept_bytes += len(kept.data)
            raise FeedbackError(507, f"cannot write into the --collect folder: {error.strerror or error}") from None
        with self._lock:
            self.used += len(kept.data)
            self._filed.add(digest)
            self.filed += 1
        return name

    def _forget(self, reading_id: str) -> None:
        kept = self._kept.pop(reading_id)
        self._kept_bytes -= len(kept.data)

    def _folder_lock(self):
        """An exclusive lock on the folder, shared with every other server filing into it."""
        return _FolderLock(os.path.join(self.folder, LOCK_NAME))

    def _write(self, data: bytes, label: str) -> str:
        """Under the folder's lock: the image under the next free number, and its row in labels.csv."""
        ending = (f"_{label}" if PLAIN.fullmatch(label) else "") + extension(data)
        with self._folder_lock():
            temporary = os.path.join(self.folder, f".incoming-{uuid.uuid4().hex}.tmp")
            name = None
            try:
                _write_new(temporary, data)
                name = _link_free(temporary, self.folder, lambda: f"{next(self._numbers):06d}{ending}")
                rows = self._read_labels()
                self._write_labels((rows or [labelled_data.HEADER]) + [(name, label)])
            except BaseException:
                if name is not None and os.path.lexists(os.path.join(self.folder, name)):
                    _remove(os.path.join(self.folder, name))
                raise
            finally:
                _remove(temporary)
        return name

    def _read_labels(self) -> list[list[str]]:
        """The rows of the folder's labels file as they are (none if there is none yet)."""
        if not os.path.lexists(self.labels_path):
            return []
        try:
            size = labelled_data.check_labels_file(self.labels_path)
        except InputError as error:  # changed under the service (a folder, a FIFO): a 507, the image kept
            raise OSError(str(error)) from None
        if os.path.islink(self.labels_path) or size > MAX_LABELS_BYTES:
            raise OSError(f"{self.labels_path} is a link or over {MAX_LABELS_BYTES} bytes; move the folder's images "
                          "away to collect more")
        with open(self.labels_path, newline="", encoding="utf-8-sig") as file:
            return list(csv.reader(file, delimiter=self.delimiter))

    def _write_labels(self, rows: list) -> None:
        """The labels file rewritten whole and renamed into place: readers never see half of it."""
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.delimiter).writerows(rows)
        temporary = os.path.join(self.folder, f".labels-{uuid.uuid4().hex}.tmp")
        try:
            _write_new(temporary, buffer.getvalue().encode("utf-8"))
            os.replace(temporary, self.labels_path)  # replaces a link planted there, never writes through it
        finally:
            _remove(temporary)


class UnlabelledWriter:
    """Images no feedback came for, written into `folder` as NNNNNN.EXT by one thread: at most
    `most_count` images and `most_bytes` there (counting what is there at start), each image once a run.
    offer() never touches the disk: the event loop hands images over, the thread writes them."""

    def __init__(self, folder: str, most_count: int, most_bytes: int):
        self.folder, self.most_count, self.most_bytes = folder, most_count, most_bytes
        if os.path.islink(folder):
            raise InputError(f"--collect: {folder} is a link; the service writes into it, so it must be a folder of "
                             "its own")
        try:
            fd = _open_folder(folder)
            try:
                files = [entry for entry in os.scandir(fd) if entry.is_file(follow_symlinks=False)]
                self.used = sum(entry.stat(follow_symlinks=False).st_size for entry in files)
            finally:
                os.close(fd)
        except OSError as error:
            raise InputError(f"--collect: cannot write into {folder}: {_reason(error, folder)}") from None
        self.count = sum(labelled_data.is_image_name(entry.name) for entry in files)
        self._numbers = _numbers_after(files)
        self._digests: set[str] = set()  # of the images written by this run
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._writing = False
        self._deadline: float | None = None  # set by close()
        self._said: set[str] = set()  # what was warned of already (once each a run)
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="unlabelled-writer", daemon=True)
        self._thread.start()

    def offer(self, data: bytes, room: int, bounded: bool = True) -> None:
        """Queue `data` to be written if the folder's bounds allow it and `room` (bytes the whole --collect
        folder may still take) holds it; `bounded`: dropped if PENDING_BYTES already wait."""
        with self._changed:
            if self._deadline is not None:
                return
            if self.count >= self.most_count or self.used + len(data) > min(self.most_bytes, room):
                self._warn("full", f"{self.folder} holds {self.count} images, {self.used} bytes, at its limit "
                                   f"of {self.most_count} images, {min(self.most_bytes, room)} bytes: images without "
                                   "feedback are no longer kept (move them away, to train on them, and restart to "
                                   "collect more)")
                return
            if bounded and self._pending_bytes + len(data) > PENDING_BYTES:
                self._warn("slow", f"the disk is slower than images without feedback arrive: some are not written "
                                   f"into {self.folder}")
                return
            self.count += 1  # counted while they wait: the bounds hold for what is queued too
            self.used += len(data)
            self._pending.append(data)
            self._pending_bytes += len(data)
            self._changed.notify_all()

    def flush(self) -> None:
        """Wait until every image offered so far is written (or refused)."""
        with self._changed:
            self._changed.wait_for(lambda: not self._pending and not self._writing)

    def close(self, seconds: float = FLUSH_SECONDS) -> None:
        """Write what waits, for at most `seconds`, then stop the thread; what is left is dropped."""
        with self._changed:
            self._deadline = time.monotonic() + seconds
            self._changed.notify_all()
        self._thread.join(seconds)
        with self._changed:
            left = len(self._pending) + self._writing
        if left:
            log.warning("%d images without feedback were not written into %s: stopping allows %g s", left,
                        self.folder, seconds)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._deadline is not None)
                if not self._pending or (self._deadline is not None and time.monotonic() > self._deadline):
                    return
                data = self._pending.popleft()
                self._pending_bytes -= len(data)
                self._writing = True
            written = self._write(data)
            with self._changed:
                self._writing = False
                if not written:  # refused (a duplicate) or failed: it no longer counts against the bounds
                    self.count -= 1
                    self.used -= len(data)
                self._changed.notify_all()

    def _write(self, data: bytes) -> bool:
        """`data` under the next free number, unless this run wrote it already or the write fails (logged)."""
        digest = hashlib.sha256(data).hexdigest()
        if digest in self._digests:
            return False
        ending = extension(data)
        temporary = f".incoming-{uuid.uuid4().hex}.tmp"
        try:
            fd = _open_folder(self.folder)  # again each time: one moved away is made anew, a link is refused
            try:
                _write_new(temporary, data, dir_fd=fd)
                _link_free(temporary, "", lambda: f"{next(self._numbers):06d}{ending}", dir_fd=fd)
            finally:
                _remove(temporary, dir_fd=fd)
                os.close(fd)
        except OSError as error:
            with self._changed:
                reason = _reason(error, self.folder)
                self._warn(reason, f"cannot write an image without feedback into {self.folder}: {reason}")
            return False
        self._digests.add(digest)
        return True

    def _warn(self, why: str, message: str) -> None:
        """`message` logged the first time this run that `why` happens (a full disk is one line, not one a write)."""
        if why not in self._said:
            self._said.add(why)
            log.warning("%s", message)


def _numbers_after(entries: list[os.DirEntry]) -> Iterator[int]:
    """The numbers for new names, past the folder's numbered ones; one tried is never tried again,
    even if its write fails."""
    numbers = [int(match.group(1)) for entry in entries if (match := NUMBERED.match(entry.name))]
    return itertools.count(max(numbers, default=0) + 1)


class _FolderLock:
    """flock on a lock file opened without following links."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> "_FolderLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            raise OSError(f"{self.path} is not a regular file")
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # releases the lock


def _write_new(path: str, data: bytes, dir_fd: int | None = None) -> None:
    """`data` into a new file (never an existing one, never through a link), flushed to the disk."""
    fd = os.open(path, CREATE, 0o644, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_free(temporary: str, folder: str, next_name: Callable[[], str], dir_fd: int | None = None) -> str:
    """`temporary` linked to the first free name `next_name` gives in `folder` (both relative to `dir_fd`
    when given): link() never replaces and never follows a link planted at the name."""
    while True:
        name = next_name()
        try:
            os.link(temporary, os.path.join(folder, name), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return name
        except FileExistsError:
            continue


def _open_folder(folder: str) -> int:
    """`folder` (made if missing) opened as a directory, never through a link planted at its name."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))


def _reason(error: OSError, folder: str) -> str:
    """Why `folder` could not be written into, in words (O_NOFOLLOW on a link says ELOOP or ENOTDIR)."""
    if error.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(folder):
        return "it is a link"
    return error.strerror or str(error)


def _remove(path: str, dir_fd: int | None = None) -> None:
    try:
        os.remove(path, dir_fd=dir_fd)
    except OSError:
        pass


def extension(data: bytes) -> str:
    """The file extension of an encoded image's format (.png if Pillow does not say)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return EXTENSIONS.get(image.format or "", ".png")
    except Exception:  # a kept image was readable; this only guards a name
        return ".png"
