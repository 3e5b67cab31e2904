"""Imported first by every script that needs the project's .venv: where this Python lacks one of its
packages (the ONNX venv has no MXNet, captcha, fontTools or matplotlib), one `error:` line names the
way instead of a traceback. Only lstm_ocr_infer.py and lstm_ocr_serve.py run there, with --onnx FILE."""

import importlib.util
import os
import signal
import sys

from lstm_ocr.cli import exit_on_signals, exit_with


def _starting_script() -> bool:
    """Whether this process is one of the project's scripts or commands, starting: its handlers still Python's own
    (a library user's process, or a script that set its own, is left alone)."""
    package = os.path.dirname(os.path.abspath(__file__))
    script = sys.argv[0] if sys.argv else ""
    ours = ((script.endswith(".py") and os.path.dirname(os.path.abspath(script)) in (package, os.path.dirname(package)))
            or os.path.basename(script).startswith("lstm-ocr-"))  # a console command (pyproject's scripts)
    return (ours
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)


if _starting_script():
    exit_on_signals()  # Ctrl-C while MXNet imports: one line, not a traceback
NEEDED = ("mxnet", "captcha", "fontTools", "matplotlib", "cv2")

missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
if missing:
    exit_with(f"{os.path.basename(sys.argv[0]) or 'this'} needs the project's .venv (`make setup`, then "
              ".venv/bin/python; or `pip install '.[train]'` in a checkout of the project); this Python "
              f"({sys.executable}) lacks {', '.join(missing)}. Without MXNet, reading works with an exported "
              "model: lstm_ocr_infer.py --onnx FILE or lstm_ocr_serve.py --onnx FILE")
