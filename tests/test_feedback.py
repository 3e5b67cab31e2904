"""The feedback store: every text of any alphabet reads back exactly from the folder it is filed into,
and writes are atomic, never through a planted link, and safe with two servers on one folder."""

import io
import os
import threading

import pytest
from PIL import Image

from lstm_ocr.cli import InputError
from lstm_ocr.labelled_data import folder_items
from lstm_ocr.serve import feedback as serve_feedback
from lstm_ocr.serve.feedback import FeedbackError, FeedbackStore

ALPHABET = "0123456789+-*/=?_.x中é "


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (20, 10), seed % 256).save(buffer, format="PNG")
    return buffer.getvalue()


def store(folder, alphabet: str = ALPHABET) -> FeedbackStore:
    return FeedbackStore(str(folder), alphabet, 600, 1000, 1 << 24, 1 << 30)


def test_every_text_of_any_alphabet_reads_back_exactly(tmp_path):
    folder = tmp_path / "collected"
    found = store(folder)
    texts = ["12/4=", "1_2", "12_4", "1.5", "..", "/", "中é", "x", "0042_7", "7 + 3"]
    for k, text in enumerate(texts):
        assert found.file(found.keep(png(k), "?"), False, text)
    assert [text for _, text in folder_items(str(folder))] == texts
    for bad in (" 12", "12 ", "a\0b"):  # would not read back as given: refused, never stored changed
        with pytest.raises(FeedbackError) as refused:
            found.file(found.keep(png(99), "?"), False, bad)
        assert refused.value.status == 400
    assert [text for _, text in folder_items(str(folder))] == texts


def test_images_already_in_the_folder_keep_their_labels(tmp_path):
    folder = tmp_path / "collected"
    folder.mkdir()
    (folder / "000007_1234.png").write_bytes(png(1))
    found = store(folder)
    name = found.file(found.keep(png(2), "1/2"), True, None)
    assert name == "000008.png"  # numbers continue; a text with `/` stays out of the name
    assert folder_items(str(folder)) == [(str(folder / "000007_1234.png"), "1234"), (str(folder / name), "1/2")]


def test_planted_links_are_never_written_through(tmp_path):
    folder, outside = tmp_path / "collected", tmp_path / "outside"
    outside.mkdir()
    found = store(folder)
    (folder / "000001.png").symlink_to(outside / "planted.png")  # a link to a file to be created
    (folder / "000002_12").symlink_to(outside)  # a directory link, the old 000002_12/4.png attack
    name = found.file(found.keep(png(1), "12/4"), True, None)
    assert name == "000002.png" and os.listdir(outside) == []
    assert not os.path.islink(folder / name) and (folder / name).read_bytes() == png(1)
    (outside / "labels.csv").write_text("keep me\n")
    os.replace(folder / "labels.csv", tmp_path / "ours.csv")
    (folder / "labels.csv").symlink_to(outside / "labels.csv")
    kept = found.keep(png(2), "5")
    with pytest.raises(FeedbackError) as refused:
        found.file(kept, True, None)
    assert refused.value.status == 507 and (outside / "labels.csv").read_text() == "keep me\n"
    assert sorted(os.listdir(folder)) == [".labels.lock", "000001.png", "000002.png", "000002_12", "labels.csv"]


def test_a_failed_write_leaves_nothing_and_keeps_the_id_for_a_retry(tmp_path, monkeypatch):
    folder = tmp_path / "collected"
    found = store(folder)
    reading = found.keep(png(1), "12")

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(serve_feedback.os, "fsync", full)
    with pytest.raises(FeedbackError) as refused:
        found.file(reading, True, None)
    assert refused.value.status == 507 and "No space left" in str(refused.value)
    assert sorted(os.listdir(folder)) == [".labels.lock"]  # no truncated image, no temporary file
    monkeypatch.undo()
    monkeypatch.setattr(FeedbackStore, "_write_labels", lambda self, rows: full())
    with pytest.raises(FeedbackError):
        found.file(reading, True, None)  # the image was linked, then labels.csv failed: it is removed
    assert sorted(os.listdir(folder)) == [".labels.lock"]
    monkeypatch.undo()
    assert found.file(reading, True, None) == "000002_12.png"  # the same id; 000001, tried, is not reused
    assert folder_items(str(folder)) == [(str(folder / "000002_12.png"), "12")]


def test_a_labels_file_broken_while_serving_is_a_507_and_keeps_the_id(tmp_path):
    folder = tmp_path / "collected"
    found = store(folder)
    reading = found.keep(png(1), "12")
    (folder / "labels.csv").mkdir()  # the folder changed under the running service
    with pytest.raises(FeedbackError) as refused:
        found.file(reading, True, None)
    assert refused.value.status == 507 and "is a folder" in str(refused.value)
    assert sorted(os.listdir(folder)) == [".labels.lock", "labels.csv"]  # the image was not left behind
    (folder / "labels.csv").rmdir()
    assert found.file(reading, True, None) == "000002_12.png"  # the same id, for a retry
    assert folder_items(str(folder)) == [(str(folder / "000002_12.png"), "12")]


def test_two_servers_on_one_folder_lose_nothing(tmp_path):
    folder = tmp_path / "collected"
    servers = [store(folder), store(folder)]
    names: list[str] = []

    def file_many(server: FeedbackStore, offset: int) -> None:
        for k in range(40):
            names.append(server.file(server.keep(png(offset + k), "?"), False, f"{offset + k}/1"))

    starts = {0: servers[0], 100: servers[1], 200: servers[0]}  # two stores, one of them filing from two threads
    threads = [threading.Thread(target=file_many, args=(server, start)) for start, server in starts.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(names) == len(set(names)) == 120
    assert sorted(text for _, text in folder_items(str(folder))) == sorted(f"{o + k}/1" for o in starts
                                                                           for k in range(40))


@pytest.mark.parametrize("kind", ["dangling", "fifo", "folder", "link"])
def test_a_labels_file_that_cannot_be_read_is_refused(tmp_path, kind):
    folder = tmp_path / "collected"
    folder.mkdir()
    (folder / "0001_12.png").write_bytes(png(1))
    labels = folder / "labels.csv"
    if kind == "dangling":
        labels.symlink_to(tmp_path / "moved" / "labels.csv")
    elif kind == "fifo":
        os.mkfifo(labels)
    elif kind == "folder":
        labels.mkdir()
    else:  # a link to a readable file elsewhere: it would be rewritten in place
        (tmp_path / "elsewhere.csv").write_text("file,text\n0001_12.png,12\n")
        labels.symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(InputError, match="labels file|is a link"):
        store(folder)


class Clock:
    """time.monotonic for the store: moved on by hand, so expiry needs no waiting."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    found = Clock()
    monkeypatch.setattr(serve_feedback.time, "monotonic", found)
    return found


def collecting(folder, count: int = 100, max_bytes: int = 1 << 30, keep_count: int = 1000) -> FeedbackStore:
    """A store that keeps images for 60 s and writes those without feedback into folder/unlabelled."""
    return FeedbackStore(str(folder), ALPHABET, 60, keep_count, 1 << 24, max_bytes, unlabelled_count=count)


def unlabelled(folder) -> list[str]:
    return sorted(os.listdir(folder / "unlabelled"))


def test_images_without_feedback_go_to_the_unlabelled_folder_and_answered_ones_never(tmp_path, clock):
    folder = tmp_path / "collected"
    found = collecting(folder)
    right, wrong, refused, silent = (found.keep(png(k), "12") for k in range(4))
    assert found.file(right, True, None) == "000001_12.png"
    assert found.file(wrong, False, None) is None  # a wrong reading without its text: answered all the same
    with pytest.raises(FeedbackError):
        found.file(refused, False, "not in the alphabet")  # a 400 keeps the image, but it was answered
    clock.now += 61
    found.keep(png(9), "3")  # the three still held expire
    found.unlabelled.flush()
    assert unlabelled(folder) == ["000001.png"]
    assert (folder / "unlabelled" / "000001.png").read_bytes() == png(3)  # `silent`, the one never answered
    found.close()  # and the one still held at shutdown
    assert unlabelled(folder) == ["000001.png", "000002.png"]
    assert (folder / "unlabelled" / "000002.png").read_bytes() == png(9)
    assert [text for _, text in folder_items(str(folder))] == ["12"]  # --train_dir DIR ignores unlabelled/
    from lstm_ocr.adapt import unlabelled_images

    assert unlabelled_images(str(folder / "unlabelled")) == [str(folder / "unlabelled" / name) for name in
                                                             ("000001.png", "000002.png")]


def test_images_pushed_out_by_the_count_bound_are_written_once_each(tmp_path, clock):
    folder = tmp_path / "collected"
    found = collecting(folder, keep_count=2)
    for seed in (1, 1, 2, 1, 3):  # the same image read three times
        found.keep(png(seed), "12")
    found.close()
    written = [(folder / "unlabelled" / name).read_bytes() for name in unlabelled(folder)]
    assert sorted(written) == sorted([png(1), png(2), png(3)])


def test_the_unlabelled_folder_is_bounded_in_count_and_disk_counting_what_is_there(tmp_path, clock):
    folder = tmp_path / "collected"
    (folder / "unlabelled").mkdir(parents=True)
    for name in ("000004.png", "000007.jpg"):
        (folder / "unlabelled" / name).write_bytes(png(0))
    found = collecting(folder, count=3)
    for seed in range(1, 5):
        found.keep(png(seed), "1")
    found.close()
    assert unlabelled(folder) == ["000004.png", "000007.jpg", "000008.png"]  # 3 images in all; numbers go on
    size = max(len(png(seed)) for seed in range(6))
    folder = tmp_path / "by-size"
    (folder / "unlabelled").mkdir(parents=True)
    (folder / "unlabelled" / "000001.png").write_bytes(b"x" * size)
    found = collecting(folder, max_bytes=4 * size + 1)  # half of it: two images
    for seed in range(1, 4):
        found.keep(png(seed), "1")
    found.close()
    assert unlabelled(folder) == ["000001.png", "000002.png"]
    folder = tmp_path / "shared"
    found = collecting(folder, max_bytes=3 * size)  # confirmed readings keep room: DIR in all stays under
    assert found.file(found.keep(png(1), "1"), True, None) and found.file(found.keep(png(2), "2"), True, None)
    found.keep(png(3), "3")
    found.keep(png(4), "4")
    found.close()  # one fits beside the two confirmed
    assert len(unlabelled(folder)) == 1
    with pytest.raises(FeedbackError) as full:  # and the folder is full for confirmed ones too now
        found.file(found.keep(png(5), "5"), True, None)
    assert full.value.status == 507


def test_keep_never_waits_for_the_disk(tmp_path, clock, monkeypatch):
    folder = tmp_path / "collected"
    found = collecting(folder, keep_count=1)
    started, release = threading.Event(), threading.Event()
    write_new = serve_feedback._write_new

    def slow(path, data, dir_fd=None):
        if dir_fd is not None:
            started.set()
            release.wait(30)
        write_new(path, data, dir_fd)

    monkeypatch.setattr(serve_feedback, "_write_new", slow)
    monkeypatch.setattr(serve_feedback, "PENDING_BYTES", max(len(png(seed)) for seed in range(5)))  # one image
    found.keep(png(1), "1")
    found.keep(png(2), "2")  # pushes png(1) out: the writer thread takes it and blocks on the disk
    assert started.wait(30)
    found.keep(png(3), "3")  # returns while the write is held up; png(2) waits
    found.keep(png(4), "4")  # png(3) finds the queue full: dropped, not waited for
    assert not release.is_set() and unlabelled(folder) == []
    release.set()
    found.close()
    written = [(folder / "unlabelled" / name).read_bytes() for name in unlabelled(folder)]
    assert written == [png(1), png(2), png(4)]


def test_a_link_at_the_unlabelled_folder_is_never_written_through(tmp_path, clock, caplog):
    folder, outside = tmp_path / "collected", tmp_path / "outside"
    outside.mkdir()
    folder.mkdir()
    (folder / "unlabelled").symlink_to(outside)
    with pytest.raises(InputError, match="is a link"):
        collecting(folder)
    (folder / "unlabelled").unlink()
    found = collecting(folder)
    os.rename(folder / "unlabelled", tmp_path / "moved")
    (folder / "unlabelled").symlink_to(outside)  # planted while serving
    found.keep(png(1), "1")
    found.close()
    assert os.listdir(outside) == [] and "it is a link" in caplog.text


def test_a_full_disk_is_a_logged_line_and_leaves_nothing(tmp_path, clock, monkeypatch, caplog):
    folder = tmp_path / "collected"
    found = collecting(folder, keep_count=1)

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(serve_feedback.os, "fsync", full)
    found.keep(png(1), "1")
    found.keep(png(2), "2")
    found.keep(png(3), "3")
    found.unlabelled.flush()
    assert unlabelled(folder) == [] and caplog.text.count("No space left on device") == 1  # once, not per image
    monkeypatch.undo()
    found.close()
    assert unlabelled(folder) == ["000001.png"]  # no temporary left behind; the image held at shutdown
