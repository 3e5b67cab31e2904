"""The HTTP service that reads captchas (its code: lstm_ocr/serve/app.py; installed as `lstm-ocr-serve`).

    python lstm_ocr_serve.py --prefix pretrained/general --port 8000
    python lstm_ocr_serve.py --onnx model.onnx --port 8000     # ONNX Runtime, no MXNet
"""

from lstm_ocr.cli import run_main
from lstm_ocr.serve.app import main

if __name__ == "__main__":
    run_main(main)
