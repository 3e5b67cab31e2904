"""The example's reading script (its code: lstm_ocr/infer.py; installed as `lstm-ocr-read`).

    python lstm_ocr_infer.py --prefix ocr --epoch 100 sample.jpg
    Digits: [0, 0, 8, 9]

It runs without MXNet too, with an exported model: `python lstm_ocr_infer.py --onnx model.onnx sample.jpg`.
"""

from lstm_ocr.infer import command

if __name__ == "__main__":
    command()
