import json
import subprocess

import pytest
from PIL import Image

from conftest import PYTHON, ROOT
from lstm_ocr import curves as training_curves
from lstm_ocr.cli import InputError
from lstm_ocr.curves import EpochRecord


def _records(n: int) -> list[EpochRecord]:
    return [EpochRecord(e, 1000 * e, 60.0 * e, e / 10, 10 - e, e / 11, 9 - e) for e in range(1, n + 1)]


def test_save_writes_history_and_a_png(tmp_path):
    prefix = str(tmp_path / "ocr")
    training_curves.save(prefix, _records(3))
    assert json.load(open(training_curves.history_path(prefix)))[2]["val_accuracy"] == 3 / 11
    with Image.open(training_curves.curves_path(prefix)) as image:
        assert image.format == "PNG" and image.size[0] > 400


def test_load_keeps_the_epochs_a_resumed_run_builds_on(tmp_path):
    prefix = str(tmp_path / "ocr")
    assert training_curves.load(prefix, 5) == []
    training_curves.save(prefix, _records(4))
    assert training_curves.load(prefix, 2) == _records(2)


@pytest.mark.parametrize("text", ["{", "[1, 2]", '{"epoch": 1}', '[{"epoch": "1", "samples": 2}]',
                                  '[{"epoch": 1, "samples": 1, "seconds": 1, "train_accuracy": "x", '
                                  '"train_loss": 1, "val_accuracy": 1, "val_loss": 1}]'])
def test_a_corrupt_history_is_one_clear_error(tmp_path, text):
    prefix = str(tmp_path / "ocr")
    with open(training_curves.history_path(prefix), "w") as file:
        file.write(text)
    with pytest.raises(InputError, match="ocr-history.json is not a valid training history"):
        training_curves.load(prefix, 5)


def test_plotting_needs_no_mxnet():
    code = "import sys, lstm_ocr.curves; sys.exit('mxnet' in sys.modules)"
    assert subprocess.run([PYTHON, "-c", code], cwd=ROOT, timeout=120).returncode == 0
