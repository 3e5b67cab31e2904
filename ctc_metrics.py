"""The example's ctc_metrics.py, the accuracies of CTC predictions, the CTC loss as a metric:
`import ctc_metrics` is lstm_ocr/ctc_metrics.py itself."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("lstm_ocr.ctc_metrics")
