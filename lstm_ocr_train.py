"""The example's training script (its code: lstm_ocr/train.py; installed as `lstm-ocr-train`).

    python lstm_ocr_train.py --loss ctc font/
    python lstm_ocr_train.py --train_dir mine/train --val_dir mine/val --finetune general --prefix mine/ocr
"""

import lstm_ocr.venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)

# isort: split

from lstm_ocr.train import command

if __name__ == "__main__":
    command()
