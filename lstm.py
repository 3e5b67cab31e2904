"""The example's lstm.py: the networks. Imported, it is lstm_ocr/lstm.py itself; as a script it converts
a checkpoint between the fused and unrolled networks (`--to onnx` is onnx_export.py under another name).

    python lstm.py --prefix ocr --epoch 12 --to unrolled --out ocr-unrolled
"""

import importlib
import sys

if __name__ == "__main__":
    import lstm_ocr.venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)
    from lstm_ocr.cli import run_main
    from lstm_ocr.lstm import main

    run_main(main)
else:
    sys.modules[__name__] = importlib.import_module("lstm_ocr.lstm")
