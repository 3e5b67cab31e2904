"""Checkpoints as the example writes them (`P-symbol.json`, `P-%04d.params`), plus the optimizer
state (`P-%04d.states`) and the hyperparameters (`P-meta.json`). Every file is written to a
temporary name and renamed into place, so a killed trainer never leaves a half-written one.
`params_digest` names a set of parameters by a hash, to compare the workers of a distributed run.
"""

import glob
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import asdict, fields

import mxnet as mx

from captcha_generator import write_atomically
from hyperparameters import Hyperparams


class CheckpointError(ValueError):
    """A checkpoint that is missing or unreadable; the message says which and what exists."""


def mxnet_reason(error: Exception) -> str:
    """The one informative line of an MXNet error (its message ends a C++ stack trace)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1].removeprefix("MXNetError: ") if lines else type(error).__name__


def params_path(prefix: str, epoch: int) -> str:
    return f"{prefix}-{epoch:04d}.params"


def states_path(prefix: str, epoch: int) -> str:
    return f"{prefix}-{epoch:04d}.states"


def meta_path(prefix: str) -> str:
    return f"{prefix}-meta.json"


def write_text(text: str) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "w") as file:
            file.write(text)
    return write


def save(prefix: str, epoch: int, symbol, arg_params: dict, aux_params: dict, hp: Hyperparams,
         save_states: Callable[[str], None] | None = None) -> None:
    """Write the symbol, hyperparameters, parameters and (if given) optimizer states of `epoch`."""
    write_atomically(f"{prefix}-symbol.json", symbol.save)
    write_atomically(meta_path(prefix), write_text(json.dumps(asdict(hp), indent=1)))
    if save_states is not None:
        write_atomically(states_path(prefix, epoch), save_states)
    params = {f"arg:{k}": v for k, v in arg_params.items()} | {f"aux:{k}": v for k, v in aux_params.items()}
    write_atomically(params_path(prefix, epoch), lambda path: mx.nd.save(path, params))
    logging.info('Saved checkpoint to "%s"', params_path(prefix, epoch))


def params_digest(params: dict) -> str:
    """SHA-256 of parameter names, shapes, dtypes and bytes, in name order: equal iff bit-identical."""
    digest = hashlib.sha256()
    for name in sorted(params):
        value = params[name].asnumpy()
        digest.update(f"{name}:{value.shape}:{value.dtype};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def saved_epochs(prefix: str) -> list[int]:
    """Epochs that have a params file under `prefix`."""
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r"-(\d{4,})\.params$")
    names = (os.path.basename(path) for path in glob.glob(glob.escape(prefix) + "-*.params"))
    return sorted(int(match.group(1)) for name in names if (match := pattern.match(name)))


def load(prefix: str, epoch: int) -> tuple:
    """(symbol, arg_params, aux_params) of a checkpoint, or CheckpointError saying what exists."""
    path = params_path(prefix, epoch)
    if not os.path.isfile(path):
        epochs = saved_epochs(prefix)
        found = f"saved epochs: {', '.join(map(str, epochs))}" if epochs else f"no checkpoint has prefix {prefix!r}"
        raise CheckpointError(f"no checkpoint {path} ({found})")
    symbol_file = f"{prefix}-symbol.json"
    if not os.path.isfile(symbol_file):
        raise CheckpointError(f"no symbol file {symbol_file} beside {path}")
    try:
        symbol = mx.sym.load(symbol_file)
    except (mx.base.MXNetError, ValueError):
        raise CheckpointError(f"{symbol_file} is not an MXNet symbol file") from None
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError:
        raise CheckpointError(f"{path} is corrupt or not an MXNet params file") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is not an MXNet checkpoint params file")
    arg_params = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux_params = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    return symbol, arg_params, aux_params


def load_hyperparams(prefix: str) -> Hyperparams:
    """The hyperparameters a checkpoint was trained with; the example's digits if it has no meta file."""
    path = meta_path(prefix)
    if not os.path.isfile(path):
        return Hyperparams()
    try:
        with open(path) as file:
            saved = json.load(file)
        known = {field.name for field in fields(Hyperparams)}
        return Hyperparams(**{k: v for k, v in saved.items() if k in known})
    except (ValueError, TypeError):
        raise CheckpointError(f"{path} is not a valid checkpoint meta file") from None
