"""The history of a training run, epoch by epoch, and its plot (`PREFIX-curves.png`)."""

import json
import os
from dataclasses import asdict, dataclass, fields

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from lstm_ocr import model_check  # noqa: E402
from lstm_ocr.cli import InputError, write_atomically, write_text  # noqa: E402


@dataclass
class EpochRecord:
    """Where training stood at the end of an epoch."""

    epoch: int
    samples: int  # training samples seen since the start, resumed runs included
    seconds: float  # training wall-clock time since the start, resumed runs included
    train_accuracy: float
    train_loss: float
    val_accuracy: float
    val_loss: float


def history_path(prefix: str) -> str:
    return f"{prefix}-history.json"


def curves_path(prefix: str) -> str:
    return f"{prefix}-curves.png"


def load(prefix: str, up_to_epoch: int) -> list[EpochRecord]:
    """The records of epochs 1..up_to_epoch saved under `prefix` (none if there is no history)."""
    path = history_path(prefix)
    if not os.path.isfile(path):
        return []
    try:
        saved = model_check.load_json(path, "it")
        if not isinstance(saved, list) or not all(isinstance(r, dict) for r in saved):
            raise TypeError("not a list of epochs")
        records = [EpochRecord(**r) for r in saved]
        for record in records:
            for field in fields(EpochRecord):
                value = getattr(record, field.name)
                if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                    raise TypeError(f"{field.name}={value!r}")
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"{path} is not a valid training history ({error}); move it away to resume without "
                         "the earlier curves") from None
    return [record for record in records if record.epoch <= up_to_epoch]


def save(prefix: str, records: list[EpochRecord]) -> None:
    """Write the history as JSON and the curves as PNG, each atomically."""
    text = json.dumps([asdict(r) for r in records], indent=1)
    write_atomically(history_path(prefix), write_text(text))
    write_atomically(curves_path(prefix), lambda path: plot(records, path))


def plot(records: list[EpochRecord], path: str) -> None:
    """Accuracy and loss, train and validation, against samples seen and against minutes."""
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), sharex="col")
    samples = [r.samples for r in records]
    minutes = [r.seconds / 60 for r in records]
    for column, (x, x_label) in enumerate([(samples, "training samples seen"), (minutes, "training minutes")]):
        for row, quantity in enumerate(["accuracy", "loss"]):
            ax = axes[row, column]
            ax.plot(x, [getattr(r, f"train_{quantity}") for r in records], "o-", label=f"train {quantity}")
            ax.plot(x, [getattr(r, f"val_{quantity}") for r in records], "s-", label=f"validation {quantity}")
            ax.set_ylabel(quantity)
            ax.grid(True, alpha=0.3)
            ax.legend()
        axes[1, column].set_xlabel(x_label)
    axes[0, 0].set_ylim(0, 1)
    axes[0, 1].set_ylim(0, 1)
    figure.suptitle(f"after epoch {records[-1].epoch}: validation accuracy {records[-1].val_accuracy:.4f}")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=80)
    plt.close(figure)
