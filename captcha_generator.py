"""The example's captcha_generator.py: as a script, writes CAPTCHA images (installed as
`lstm-ocr-generate`); imported, it is lstm_ocr/captcha_generator.py itself.

    python captcha_generator.py font/DroidSansMono.ttf sample.jpg
"""

import importlib
import sys

if __name__ == "__main__":
    import lstm_ocr.venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)
    from lstm_ocr.captcha_generator import command

    command()
else:
    sys.modules[__name__] = importlib.import_module("lstm_ocr.captcha_generator")
