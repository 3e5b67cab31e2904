"""Folders of labelled images: listing, labels files (hostile ones included), the hold-out split,
shared files, and the label checks."""

import os
import shutil

import pytest
from PIL import Image

from lstm_ocr import labelled_data
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import MAX_LABELS_BYTES


def image(path, shade: int = 200) -> str:
    Image.new("L", (40, 15), shade).save(path)
    return str(path)


def test_labels_come_from_names(tmp_path):
    for name in ("0001_4711.png", "0002_08.jpg", "abc.png", "scan_x_y7.bmp"):
        image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    items = labelled_data.folder_items(str(tmp_path))
    assert [(os.path.basename(p), t) for p, t in items] == [
        ("0001_4711.png", "4711"), ("0002_08.jpg", "08"), ("abc.png", "abc"), ("scan_x_y7.bmp", "y7")]


def test_labels_come_from_a_labels_file_when_there_is_one(tmp_path):
    image(tmp_path / "a.png")
    image(tmp_path / "b_999.png")
    (tmp_path / "labels.csv").write_text("file,text\na.png,12\nb_999.png,34\n")
    items = labelled_data.folder_items(str(tmp_path))
    assert [(os.path.basename(p), t) for p, t in items] == [("a.png", "12"), ("b_999.png", "34")]


@pytest.mark.parametrize("setup, words", [
    (lambda d: None, "is empty"),
    (lambda d: (d / "readme.txt").write_text("x"), "has no image files"),
    (lambda d: image(d / "x_.png"), "has no labelled images"),
    (lambda d: (image(d / "a.png"), (d / "labels.csv").write_text("a.png,1\nb.png,2\nc.png,3\n")),
     "names files that are not in .*b.png, .*c.png \\(2 in all\\)"),
    (lambda d: (d / "labels.csv").write_text("../x.png,1\n"), "line 1 names '../x.png', which is not a file inside"),
    (lambda d: (d / "labels.tsv").write_text("/etc/passwd\t1\n"), "not a file inside"),
])
def test_bad_folders_are_one_clear_error(tmp_path, setup, words):
    setup(tmp_path)
    with pytest.raises(InputError, match=words):
        labelled_data.folder_items(str(tmp_path))


def test_a_missing_folder_and_a_huge_labels_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        labelled_data.folder_items(str(tmp_path / "nothing"))
    with open(tmp_path / "labels.csv", "wb") as file:
        file.truncate(MAX_LABELS_BYTES + 1)  # sparse: no disk is filled
    with pytest.raises(InputError, match="over the limit"):
        labelled_data.folder_items(str(tmp_path))


def test_many_bad_files_are_named_a_few_and_counted():
    message = labelled_data.name_some([f"f{i}.png" for i in range(12)])
    assert message.startswith("f0.png, f1.png") and "and 7 more (12 in all)" in message


def test_the_hold_out_is_a_fixed_tenth_and_new_files_leave_it_alone():
    items = [(f"/d/{i:04d}_{i}.png", str(i)) for i in range(200)]
    train, val = labelled_data.holdout_split(items, 0.1, seed=13)
    assert len(val) == 20 and len(train) == 180 and not set(train) & set(val)
    assert labelled_data.holdout_split(list(reversed(items)), 0.1, seed=13)[1] == sorted(val, reverse=True)
    more = items + [(f"/d/new{i}.png", "1") for i in range(10)]
    _, val_more = labelled_data.holdout_split(more, 0.1, seed=13)
    assert len(set(val) & set(val_more)) >= 15  # at most the new files displace a few
    assert labelled_data.holdout_split(items, 0.1, seed=14)[1] != val
    small_train, small_val = labelled_data.holdout_split(items[:3], 0.1, seed=13)
    assert len(small_val) == 1 and len(small_train) == 2
    with pytest.raises(InputError, match="at least 2"):
        labelled_data.holdout_split(items[:1], 0.1, seed=13)


def test_shared_files_by_path_link_and_content(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    a, b = image(tmp_path / "train" / "a_1.png", 10), image(tmp_path / "train" / "b_2.png", 20)
    copy = shutil.copy(b, tmp_path / "val" / "copy_2.png")
    os.symlink(a, tmp_path / "val" / "link_1.png")
    other = image(tmp_path / "val" / "c_3.png", 30)
    pairs = labelled_data.shared_files([a, b], [str(tmp_path / "val" / "link_1.png"), str(copy), other])
    assert sorted(pairs) == sorted([(a, str(tmp_path / "val" / "link_1.png")), (b, str(copy))])


def test_text_fields_and_label_checks():
    items = [("a.png", "12"), ("b.png", "3x45")]
    assert labelled_data.text_fields([t for _, t in items]) == ("12345x", 2, 4)
    with pytest.raises(InputError, match="characters 'x' outside --chars '0123456789': b.png"):
        labelled_data.check_texts(items, "0123456789", 9, "")
    with pytest.raises(InputError, match="longer than the 3 characters .*b.png \\(4 characters\\)"):
        labelled_data.check_texts(items, "012345x", 3, "")
    labelled_data.check_texts(items, "012345x", 4, "")


def test_the_duplicate_check_is_linear_in_the_folder(tmp_path, monkeypatch):
    """100,000 training and 10,000 validation files of one size: each validation file is one lookup, not a
    comparison with every training file (counted through the digests' own __eq__)."""
    comparisons = []

    class Digest(str):
        __hash__ = str.__hash__

        def __eq__(self, other):
            comparisons.append(1)
            return str.__eq__(self, other)

    monkeypatch.setattr(labelled_data.os.path, "getsize", lambda path: 1000)
    monkeypatch.setattr(labelled_data.os.path, "realpath", lambda path: path)
    monkeypatch.setattr(labelled_data, "_digest", lambda path: Digest(path.rsplit("/", 1)[-1]))
    train = [f"train/{n}" for n in range(100_000)]
    val = [f"val/{n}" for n in range(99_000, 109_000)]  # the first 1,000 hold a training file's bytes
    pairs = labelled_data.shared_files(train, val)
    assert len(pairs) == 1000 and pairs[0] == ("train/99000", "val/99000")
    assert len(comparisons) <= 2 * len(val)  # the quadratic check made a billion


def test_a_generated_name_keeps_every_underscore_of_its_text(tmp_path):
    image(tmp_path / "0042_12_4.png")
    assert labelled_data.folder_items(str(tmp_path)) == [(str(tmp_path / "0042_12_4.png"), "12_4")]


@pytest.mark.parametrize("kind", ["dangling", "fifo", "folder"])
def test_a_labels_file_that_cannot_be_read_is_an_error_never_absent(tmp_path, kind):
    """A moved labels folder (dangling link), a FIFO or a folder named labels.csv: the file names must
    not silently become the labels, and a FIFO is never opened (it would block)."""
    image(tmp_path / "0001_12.png")
    labels = tmp_path / "labels.csv"
    if kind == "dangling":
        labels.symlink_to(tmp_path / "moved" / "labels.csv")
    elif kind == "fifo":
        os.mkfifo(labels)
    else:
        labels.mkdir()
    with pytest.raises(InputError, match="labels file .*labels.csv"):
        labelled_data.folder_items(str(tmp_path))
