"""Read captchas with an LSTM + CTC network: train, fine-tune on your own folder, read, export to ONNX, serve.

    from lstm_ocr import Reader
    Reader("general").read("captcha.png").text

Light on purpose: `Reader` and `Reading` load on first use, so that `import lstm_ocr.venv_check` (the
root scripts' first line) costs nothing before it can say which venv is missing."""

__version__ = "1.0.0"
__all__ = ["Reader", "Reading", "__version__"]


def __getattr__(name: str):
    if name in ("Reader", "Reading"):
        from lstm_ocr import reader
        return getattr(reader, name)
    raise AttributeError(f"module 'lstm_ocr' has no attribute {name!r}")
