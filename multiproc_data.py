"""The example's multiproc_data.py, CAPTCHA samples drawn by worker processes into shared memory:
`import multiproc_data` is lstm_ocr/multiproc_data.py itself."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("lstm_ocr.multiproc_data")
