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
