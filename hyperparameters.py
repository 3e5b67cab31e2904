"""The example's hyperparameters.py, every constant of the network and its training:
`import hyperparameters` is lstm_ocr/hyperparameters.py itself."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("lstm_ocr.hyperparameters")
