"""The example's ocr_iter.py, MXNet data iterators over CAPTCHA batches:
`import ocr_iter` is lstm_ocr/ocr_iter.py itself."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("lstm_ocr.ocr_iter")
