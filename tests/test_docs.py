"""README.md and docs/ agree: the shipped models by their bare names, the export as onnx_export.py, no
machine's own paths, and the service's start-up line as the service prints it."""

import glob
import os
import re

import pytest

from conftest import ROOT

PAGES = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def _text(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read()


@pytest.mark.parametrize("page", PAGES, ids=os.path.basename)
def test_a_page_names_the_shipped_models_and_the_exporter_as_the_readme_does(page):
    text = _text(page)
    assert "pretrained/" not in text  # the shipped models are lstm_ocr/models/NAME, given as NAME
    assert not re.search(r"python lstm\.py [^`\n]*--to onnx", text)  # the export is onnx_export.py
    assert not re.search(r"(?<![\w.~-])/(?:work|root|home|tmp|Users)/", text), "a machine's own path"


def test_the_start_up_lines_shown_name_the_collect_and_access_log_options():
    shown = [line for page in PAGES for line in _text(page).splitlines()
             if line.startswith("Serving ") and "GET /docs)" in line]
    assert len(shown) >= 2
    for line in shown:
        assert re.search(r"; --collect (off: no feedback filed|\S+); --access_log (off: refusals only|on)$", line), line
