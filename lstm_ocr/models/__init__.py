"""The models shipped inside the package, each a checkpoint (NAME-symbol.json, NAME-meta.json,
NAME-NNNN.params) and its ONNX export (NAME.onnx, made by onnx_export.py): a bare name such as
`general`, given where a checkpoint prefix is expected, reads the shipped model from any folder.

A checkpoint of that prefix in the current folder comes first (a model of your own named `ocr` is
yours). Imports nothing heavy: the ONNX venv, without MXNet, resolves names too."""

import glob
import os
import re

from lstm_ocr.cli import InputError

FOLDER = os.path.dirname(os.path.abspath(__file__))
_PARAMS = re.compile(r"^(?P<name>[a-z]+)-(?P<epoch>\d{4,})\.params$")


def shipped() -> dict[str, int]:
    """Each shipped model's name and the epoch it ships at."""
    found = (_PARAMS.match(name) for name in sorted(os.listdir(FOLDER)))
    return {match["name"]: int(match["epoch"]) for match in found if match}


def has_checkpoint(prefix: str) -> bool:
    """Whether some epoch of a checkpoint is saved under `prefix` (PREFIX-NNNN.params)."""
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r"-\d{4,}\.params$")
    return any(pattern.match(os.path.basename(path)) for path in glob.glob(glob.escape(prefix) + "-*.params"))


def is_shipped(prefix: str) -> bool:
    """Whether `prefix` names a shipped model rather than a checkpoint here (none saved under it)."""
    return prefix in shipped() and not has_checkpoint(prefix)


def resolve(prefix: str, epoch: int | None = None) -> str:
    """The checkpoint prefix to load for `prefix`: itself where a checkpoint is saved under it, the
    shipped model's where it is a shipped name (of that epoch, if given), else InputError saying where
    it looked."""
    if has_checkpoint(prefix):
        return prefix
    models = shipped()
    if prefix in models and epoch in (None, models[prefix]):
        return os.path.join(FOLDER, prefix)
    raise InputError(not_found(prefix, epoch))


def onnx_path(name: str) -> str:
    """The ONNX export of shipped model `name`."""
    return os.path.join(FOLDER, f"{name}.onnx")


def not_found(prefix: str, epoch: int | None = None) -> str:
    """Where a prefix was looked for: the path given, then the shipped models."""
    models = shipped()
    what = f"{os.path.basename(prefix)}-{epoch:04d}.params" if epoch else f"{os.path.basename(prefix)}-NNNN.params"
    if prefix in models:
        elsewhere = f"the shipped model {prefix} in {FOLDER} has epoch {models[prefix]} only"
    else:
        elsewhere = f"no shipped model is named so (in {FOLDER}: {', '.join(models)})"
    return (f"no checkpoint has prefix {prefix!r}: no {what} in {os.path.dirname(os.path.abspath(prefix))}, and "
            f"{elsewhere}")
