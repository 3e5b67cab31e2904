"""The HTTP service that reads captchas (its code: lstm_ocr/serve/app.py; installed as `lstm-ocr-serve`).

    python lstm_ocr_serve.py --prefix general --port 8000
    python lstm_ocr_serve.py --onnx model.onnx --port 8000     # ONNX Runtime, no MXNet
"""

from lstm_ocr.serve.app import command

if __name__ == "__main__":
    command()
