"""Checkpoints as the example writes them (`P-symbol.json`, `P-%04d.params`), plus the optimizer
state (`P-%04d.states`) and the hyperparameters (`P-meta.json`). Every file is written to a
temporary name and renamed into place, so a killed trainer never leaves a half-written one.
The optimizer state is saved as NDArrays (MXNet's array format), never as a pickle: loading a
checkpoint someone else made cannot run code.
`params_digest` names a set of parameters by a hash, to compare the workers of a distributed run.
"""

import glob
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import asdict

import mxnet as mx
import numpy as np

from lstm_ocr import hyperparameters, model_check
from lstm_ocr.cli import TEMPORARY_MARK, InputError, temporary_path, write_atomically, write_text
from lstm_ocr.hyperparameters import CRNN_FIRST_CONV, FUSED_PARAMS, MAX_MODEL_BYTES, Hyperparams

MAX_STATE_PARTS = 4  # arrays per weight in any optimizer's state (Adam has 2)
STATE_TOTAL = "__num_update"  # the optimizer's update count, in a .states file


class CheckpointError(InputError):
    """A checkpoint that is missing or unreadable; the message says which and what exists."""


def mxnet_reason(error: Exception) -> str:
    """The one informative line of an MXNet error (its message ends a C++ stack trace)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1].removeprefix("MXNetError: ") if lines else type(error).__name__


def finetune_spec(spec: str) -> tuple[str, int | None]:
    """(prefix, epoch or None) of `--finetune PREFIX[:EPOCH]`, or InputError; a prefix whose last colon is not
    followed by digits is a prefix (runs/a:b)."""
    prefix, colon, epoch = spec.rpartition(":")
    if not colon or not epoch.isdigit():
        prefix, epoch = spec, ""
    if not prefix or (epoch and int(epoch) < 1):
        raise InputError(f"--finetune takes PREFIX or PREFIX:EPOCH (for example general:38), got {spec!r}")
    return prefix, int(epoch) if epoch else None


def params_path(prefix: str, epoch: int) -> str:
    return f"{prefix}-{epoch:04d}.params"


def states_path(prefix: str, epoch: int) -> str:
    return f"{prefix}-{epoch:04d}.states"


def meta_path(prefix: str) -> str:
    return f"{prefix}-meta.json"


def symbol_path(prefix: str) -> str:
    return f"{prefix}-symbol.json"


def save(prefix: str, epoch: int, symbol, arg_params: dict, aux_params: dict, hp: Hyperparams,
         save_states: Callable[[str], None] | None = None, options: dict | None = None) -> None:
    """Write the symbol, the meta file (every hyperparameter, and the run's other `options`), the
    parameters and (if given) optimizer states of `epoch`."""
    write_atomically(symbol_path(prefix), symbol.save)
    meta = asdict(hp) | ({"options": options} if options is not None else {})
    write_atomically(meta_path(prefix), write_text(json.dumps(meta, indent=1)))
    if save_states is not None:
        write_atomically(states_path(prefix, epoch), save_states)
    params = {f"arg:{k}": v for k, v in arg_params.items()} | {f"aux:{k}": v for k, v in aux_params.items()}
    try:
        write_atomically(params_path(prefix, epoch), lambda path: mx.nd.save(path, params))
    except InputError:
        if save_states is not None and os.path.isfile(states_path(prefix, epoch)):
            os.remove(states_path(prefix, epoch))  # no orphan .states without its params (a full disk)
        raise
    logging.info('Saved checkpoint to "%s"', params_path(prefix, epoch))


def remove_epoch(prefix: str, epoch: int) -> list[str]:
    """Delete the params and optimizer-state files of `epoch` under `prefix` (regular files only; a link
    or anything else there stays); the paths removed. A file that cannot be removed is logged and kept."""
    removed = []
    for path in (params_path(prefix, epoch), states_path(prefix, epoch)):
        if os.path.isfile(path) and not os.path.islink(path):
            try:
                os.remove(path)
            except OSError as error:
                logging.warning("Could not remove %s: %s", path, error.strerror or error)
                continue
            removed.append(path)
    return removed


def file_names(prefix: str, epochs: list[int]) -> list[str]:
    """Every file a run writes under `prefix` for these epochs (the curves, history and lock included)."""
    return ([symbol_path(prefix), meta_path(prefix), f"{prefix}-history.json", f"{prefix}-curves.png",
             lock_path(prefix)] + [path for epoch in epochs for path in (params_path(prefix, epoch),
                                                                          states_path(prefix, epoch))])


def check_writable(prefix: str, epochs: list[int]) -> None:
    """InputError now, before any training, if a checkpoint file of `epochs` could not be written
    (a missing or read-only folder, a name too long, a path under /proc); tries each temporary name."""
    folder = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        raise InputError(f"checkpoint folder {folder} does not exist")
    for path in file_names(prefix, epochs):
        if os.path.isdir(path):
            raise InputError(f"cannot write checkpoint file {path}: it is a folder")
        probe = temporary_path(path)
        try:
            with open(probe, "x"):
                pass
        except OSError as error:
            raise InputError(f"cannot write checkpoint file {path}: {error.strerror or error}") from None
        finally:
            if os.path.lexists(probe):
                os.remove(probe)


def clear_stale_temporaries(prefix: str) -> list[str]:
    """Remove temporary files that a killed writer left under `prefix` (those of live processes stay)."""
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r"-.*" + re.escape(TEMPORARY_MARK) + r"(\d+)$")
    removed = []
    for path in glob.glob(glob.escape(prefix) + "-*" + TEMPORARY_MARK + "*"):
        match = pattern.match(os.path.basename(path))
        if match and not os.path.exists(f"/proc/{match.group(1)}") and os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def lock_path(prefix: str) -> str:
    return f"{prefix}.lock"


def lock(prefix: str):
    """Hold an exclusive lock on `prefix` for as long as the returned file stays open (the process
    ends, the lock goes); InputError if another live process holds it."""
    import fcntl

    path = lock_path(prefix)
    try:  # never through a symlink, never truncated on open: a link planted there cannot empty another file
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    except OSError as error:
        reason = "it is a symlink" if os.path.islink(path) else error.strerror or str(error)
        raise InputError(f"cannot use the lock file {path}: {reason}; remove it, or choose another --prefix") \
            from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(descriptor)
        kind = "has other names (a hard link)" if stat.S_ISREG(info.st_mode) else "is not a regular file"
        raise InputError(f"the lock file {path} {kind}; remove it, or choose another --prefix")
    file = os.fdopen(descriptor, "r+")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        file.seek(0)
        holder = file.read().strip() or "another process"
        file.close()
        raise InputError(f"prefix {prefix} is in use by a running trainer ({holder}); wait for it, or "
                         "choose another --prefix") from None
    file.seek(0)
    file.truncate()
    file.write(f"pid {os.getpid()}")
    file.flush()
    return file


def _index(text: str) -> int | str:
    return int(text) if text.isdigit() else text  # a weight's index, or its name on a kvstore


def save_optimizer_states(updater: "mx.optimizer.Updater", path: str) -> None:
    """The optimizer's per-weight state and update counts as an NDArray file (no pickle):
    `state|INDEX|PART|PARTS` arrays, `count|INDEX` and `__num_update` counters."""
    arrays = {}
    for index, state in updater.states.items():
        parts = state if isinstance(state, tuple | list) else (state,)
        for part_number, part in enumerate(parts):
            if part is not None:
                arrays[f"state|{index}|{part_number}|{len(parts)}"] = part.as_in_context(mx.cpu())
    for index, count in updater.optimizer._index_update_count.items():
        arrays[f"count|{index}"] = mx.nd.array([count], dtype="int64")
    arrays[STATE_TOTAL] = mx.nd.array([updater.optimizer.num_update], dtype="int64")
    mx.nd.save(path, arrays)


def read_optimizer_states(path: str) -> tuple[dict, dict, int]:
    """What save_optimizer_states wrote: the states by index, the update counts by index, and the total
    update count; CheckpointError for any other file (an older version's pickle included: it is never
    unpickled)."""
    fresh = "delete it to resume with a fresh optimizer"
    try:
        model_check.check_ndarray_file(path, MAX_MODEL_BYTES)
    except InputError as error:
        raise CheckpointError(f"{path} is not an optimizer state this program wrote ({error}; an older version's "
                              f"pickle is never loaded); {fresh}") from None
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError:
        raise CheckpointError(f"{path} is not an optimizer state this program wrote (a truncated file, or an "
                              f"older version's pickle, which is never loaded); {fresh}") from None
    if not isinstance(saved, dict) or STATE_TOTAL not in saved:
        raise CheckpointError(f"{path} is not an optimizer state this program wrote; {fresh}")
    states: dict = {}
    counts: dict = {}
    try:
        for key, value in saved.items():
            kind, *rest = key.split("|")
            if kind == "state":
                index, part_number, parts = _index(rest[0]), int(rest[1]), int(rest[2])
                if not 0 <= part_number < parts <= MAX_STATE_PARTS:
                    raise ValueError(key)
                states.setdefault(index, [None] * parts)[part_number] = value
            elif kind == "count":
                counts[_index(rest[0])] = _count(value, key)
            elif key != STATE_TOTAL:
                raise ValueError(key)
        total = _count(saved[STATE_TOTAL], STATE_TOTAL)
    except (ValueError, IndexError):
        raise CheckpointError(f"{path} is a malformed optimizer state; {fresh}") from None
    return {index: parts[0] if len(parts) == 1 else tuple(parts) for index, parts in states.items()}, counts, total


def _count(value: "mx.nd.NDArray", key: str) -> int:
    """An update count as saved: one non-negative integer (a negative one is a crafted file)."""
    if value.shape != (1,) or np.dtype(value.dtype).kind not in "iu":
        raise ValueError(key)
    count = int(value.asnumpy()[0])
    if count < 0:
        raise ValueError(key)
    return count


def state_parts(optimizer: str, momentum: float) -> int:
    """Arrays per weight in the state of `optimizer` (SGD without momentum keeps none)."""
    return 2 if optimizer == "adam" else int(momentum > 0)


def check_states_fit(path: str, optimizer: str, momentum: float, saved_optimizer: str | None = None) -> None:
    """CheckpointError unless the .states file `path` holds the state of `optimizer` (another optimizer's
    state would be read as this one's: a traceback mid-epoch, or silently wrong updates)."""
    states, _, _ = read_optimizer_states(path)
    wanted = state_parts(optimizer, momentum)
    found = {len(state) if isinstance(state, tuple) else 1 for state in states.values()}
    if found and found != {wanted}:
        saved = f" (the run's own --optimizer {saved_optimizer})" if saved_optimizer else ""
        raise CheckpointError(f"{path} holds another optimizer's state ({'/'.join(map(str, sorted(found)))} arrays a "
                              f"weight; --optimizer {optimizer} keeps {wanted}): resume with the optimizer it was "
                              f"saved with{saved}, or delete it to resume with a fresh optimizer")


def load_optimizer_states(updater: "mx.optimizer.Updater", path: str) -> None:
    """Restore what save_optimizer_states wrote into `updater` (read_optimizer_states checks the file)."""
    states, counts, total = read_optimizer_states(path)
    updater.states = states
    updater.states_synced = dict.fromkeys(updater.states, False)
    for device_counts in updater.optimizer._all_index_update_counts.values():  # one dict per device
        device_counts.clear()
        device_counts.update(counts)
    updater.optimizer.num_update = total


def params_digest(params: dict) -> str:
    """SHA-256 of parameter names, shapes, dtypes and bytes, in name order: equal iff bit-identical."""
    digest = hashlib.sha256()
    for name in sorted(params):
        value = params[name].asnumpy()
        digest.update(f"{name}:{value.shape}:{value.dtype};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def network_of(arg_params) -> str:
    """Which network a set of parameters (or their names) belongs to: for meta files written before
    they named it."""
    if CRNN_FIRST_CONV in arg_params:
        return "crnn"
    return "fused" if FUSED_PARAMS in arg_params else "unrolled"


def loss_of(training_symbol) -> str:
    """Which CTC loss a saved training symbol ends in."""
    return "ctc" if "ctc_output" in training_symbol.list_outputs() else "warpctc"


def latest_epoch(prefix: str) -> int:
    """The last epoch saved under `prefix`, or CheckpointError naming what to do."""
    epochs = saved_epochs(prefix)
    if not epochs:
        raise CheckpointError(f"no checkpoint has prefix {prefix!r} (no {prefix}-NNNN.params): train one, or give "
                              "a prefix such as general (a shipped model)")
    return epochs[-1]


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
    symbol_file = symbol_path(prefix)
    if not os.path.isfile(symbol_file):
        raise CheckpointError(f"no symbol file {symbol_file} beside {path}")
    try:
        symbol = mx.sym.load_json(model_check.read_symbol(symbol_file))
    except InputError as error:
        raise CheckpointError(str(error)) from None
    except (mx.base.MXNetError, ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{symbol_file} is not an MXNet symbol file") from None
    try:
        model_check.check_ndarray_file(path, MAX_MODEL_BYTES)
    except InputError as error:
        raise CheckpointError(str(error)) from None
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError:
        raise CheckpointError(f"{path} is corrupt or not an MXNet params file") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is not an MXNet checkpoint params file")
    arg_params = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux_params = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    return symbol, arg_params, aux_params


def _saved_meta(prefix: str) -> dict:
    """The meta file as saved; the example's digits (an empty dict) if there is none."""
    path = meta_path(prefix)
    if not os.path.isfile(path):
        return {}
    try:
        saved = model_check.load_json(path, f"{path} is not a valid checkpoint meta file")
    except InputError as error:
        raise CheckpointError(str(error)) from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is not a valid checkpoint meta file: it is not a JSON object")
    return saved


def _with_network(saved: dict, symbol, arg_params: dict) -> dict:
    """`network` and `loss`, which older meta files lack, taken from the checkpoint itself."""
    return {"network": network_of(arg_params), "loss": loss_of(symbol)} | saved


def read_meta(prefix: str, epoch: int | None = None) -> dict:
    """The meta file as saved, `network` and `loss` filled in from the checkpoint of `epoch` (the latest
    if None) where the file predates them."""
    saved = _saved_meta(prefix)
    if ("network" not in saved or "loss" not in saved) and saved_epochs(prefix):
        symbol, arg_params, _ = load(prefix, epoch if epoch is not None else latest_epoch(prefix))
        saved = _with_network(saved, symbol, arg_params)
    return saved


def _hyperparams(prefix: str, saved: dict) -> Hyperparams:
    try:
        return hyperparameters.from_saved(saved)
    except InputError as error:
        raise CheckpointError(f"{meta_path(prefix)} is not a valid checkpoint meta file: it {error}") from None


def load_hyperparams(prefix: str, epoch: int | None = None) -> Hyperparams:
    """The hyperparameters a checkpoint was trained with (see read_meta)."""
    return _hyperparams(prefix, read_meta(prefix, epoch))


def load_with_hyperparams(prefix: str, epoch: int) -> tuple:
    """(symbol, arg_params, aux_params, hp) of a checkpoint, or CheckpointError; the meta file's
    alphabet must fit the classes of the params (a meta file from another run reads the wrong text)."""
    symbol, arg_params, aux_params = load(prefix, epoch)
    hp = _hyperparams(prefix, _with_network(_saved_meta(prefix), symbol, arg_params))
    if "pred_fc_weight" in arg_params and arg_params["pred_fc_weight"].shape[0] != hp.num_classes:
        raise CheckpointError(f"{meta_path(prefix)} has {len(hp.chars)} characters but {params_path(prefix, epoch)} "
                              f"has {arg_params['pred_fc_weight'].shape[0] - 1}")
    return symbol, arg_params, aux_params, hp
