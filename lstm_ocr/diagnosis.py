"""What labelled readings say beyond their accuracy, in one line each: labels the model can never read
(characters outside its alphabet), misreads that differ from their label only in letter case, and a
set too small for its accuracy to mean much. The reader's summary (lstm_ocr_infer.py) and the
trainer's (lstm_ocr_train.py) both print them.
"""

import os

TRUSTED_IMAGES = 50  # below this, one image moves the accuracy by more than 2 %: 98 % and 100 % look alike
EXAMPLES = 3  # labels a line names


def outside_alphabet(items: list[tuple[str, str]], chars: str) -> str | None:
    """The labels of (path, label) `items` that use characters outside `chars`: how many, which
    characters, a few examples; None if every label fits."""
    alphabet = set(chars)
    bad = [(path, label) for path, label in items if set(label) - alphabet]
    if not bad:
        return None
    unknown = "".join(sorted(set("".join(label for _, label in bad)) - alphabet))
    examples = ", ".join(f"{os.path.basename(path)} ({label!r})" for path, label in bad[:EXAMPLES])
    return (f"{len(bad)} of {len(items)} labels use characters outside the model's alphabet {chars!r} ({unknown!r}), "
            f"so they can never be read right: for example {examples}")


def case_only(pairs: list[tuple[str, str]]) -> tuple[int, int]:
    """Of (reading, label) pairs: how many misreads differ from their label only in letter case, and
    how many misreads there are."""
    misreads = [(text, label) for text, label in pairs if text != label]
    return sum(text.lower() == label.lower() for text, label in misreads), len(misreads)


def case_note(pairs: list[tuple[str, str]], advice: str) -> str | None:
    """A line when most misreads (more than half) differ only in letter case, ending in `advice`."""
    only_case, misreads = case_only(pairs)
    if not misreads or 2 * only_case <= misreads:
        return None
    return f"{only_case} of the {misreads} misreads differ from their label only in letter case: {advice}"


def small_set(count: int, what: str, advice: str) -> str | None:
    """A line when `count` labelled images (`what`: "validation holds") are too few to trust."""
    if count >= TRUSTED_IMAGES:
        return None
    return (f"{what} only {count} labelled images: one image is {100 / max(count, 1):.0f} % of the accuracy, "
            f"too few to trust it; {advice}")
