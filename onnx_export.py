"""A checkpoint as an ONNX model, for ONNX Runtime (its code: lstm_ocr/onnx_export.py; installed as
`lstm-ocr-export`).

    python onnx_export.py --prefix general --out general.onnx    # [--epoch N] [--overwrite]
"""

import lstm_ocr.venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)

# isort: split

from lstm_ocr.onnx_export import command

if __name__ == "__main__":
    command()
