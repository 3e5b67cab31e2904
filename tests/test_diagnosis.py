"""The one-line diagnoses of labelled readings: outside the alphabet, case-only misreads, too few images."""

from lstm_ocr.diagnosis import TRUSTED_IMAGES, case_note, case_only, outside_alphabet, small_set


def test_labels_outside_the_alphabet_are_counted_with_examples():
    items = [("a/0001_12ab.png", "12ab"), ("a/0002_1234.png", "1234"), ("a/0003_x9.png", "x9")]
    line = outside_alphabet(items, "0123456789")
    assert line.startswith("2 of 3 labels use characters outside the model's alphabet '0123456789' ('abx')")
    assert "0001_12ab.png ('12ab'), 0003_x9.png ('x9')" in line
    assert outside_alphabet(items[1:2], "0123456789") is None


def test_mostly_case_only_misreads_are_named():
    pairs = [("abc", "aBc"), ("xy", "XY"), ("12", "13"), ("ok", "ok")]
    assert case_only(pairs) == (2, 3)
    assert case_note(pairs, "fold case").startswith("2 of the 3 misreads differ from their label only in letter case")
    assert case_note(pairs + [("1", "2")], "fold case") is None  # half is not most
    assert case_note([("ok", "ok")], "fold case") is None


def test_a_set_below_the_trusted_size_says_so():
    assert "only 20 labelled images: one image is 5 %" in small_set(20, "Validation holds", "give --val_dir")
    assert small_set(TRUSTED_IMAGES, "Validation holds", "give --val_dir") is None
