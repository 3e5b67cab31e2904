"""When a training run may stop before its last epoch, which of its epochs is the best, and which
epochs' checkpoint files it keeps.

A run validates after every epoch. Its best epoch has the highest validation accuracy, the lower
validation loss breaking a tie (and the earlier epoch a tie of both). A validation set smaller than
TRUSTED_VALIDATION images cannot tell 98 % from 100 %: such a run trains its whole schedule and is
read with its last epoch. With a larger one and a patience of N epochs (`--patience N`, 0: never stop
early), the run stops once validation is perfect, or once N epochs have passed without a higher
validation accuracy or a lower validation loss than any before them, and is read with its best. With
`--keep_epochs N` (0: keep all), after every epoch only the last N epochs the run wrote and its best
one (the epoch to read with) keep their files; the others it wrote are removed (never an epoch it did
not write).
"""

from lstm_ocr.curves import EpochRecord
from lstm_ocr.diagnosis import TRUSTED_IMAGES

TRUSTED_VALIDATION = TRUSTED_IMAGES  # fewer validation images than this cannot tell 98 % from 100 %


def better(record: EpochRecord, than: EpochRecord) -> bool:
    """Whether `record` validated better than `than`: a higher accuracy, or as high with a lower loss."""
    return (record.val_accuracy, -record.val_loss) > (than.val_accuracy, -than.val_loss)


def best(history: list[EpochRecord]) -> EpochRecord:
    """The best epoch of a non-empty history (the earliest of equals)."""
    found = history[0]
    for record in history[1:]:
        if better(record, found):
            found = record
    return found


def chosen(history: list[EpochRecord], validation_images: int) -> EpochRecord:
    """The epoch to read with: the best, when validation has enough images to tell; else the last (the
    end of the learning rate's decay)."""
    return best(history) if validation_images >= TRUSTED_VALIDATION else history[-1]


def stop_reason(history: list[EpochRecord], patience: int, validation_images: int) -> str | None:
    """Why the run should stop after the last epoch of `history`, or None to go on."""
    if patience <= 0 or not history or validation_images < TRUSTED_VALIDATION:
        return None
    last = history[-1]
    if last.val_accuracy >= 1.0:
        return f"validation accuracy reached 1.0 on {validation_images} images"
    if last.epoch - last_improvement(history) >= patience:
        return f"neither the validation accuracy nor its loss improved for {patience} epochs (--patience {patience})"
    return None


def last_improvement(history: list[EpochRecord]) -> int:
    """The last epoch that brought a higher validation accuracy or a lower validation loss than every
    epoch before it (the loss keeps improving while a decaying learning rate still teaches)."""
    found, top_accuracy, low_loss = history[0].epoch, history[0].val_accuracy, history[0].val_loss
    for record in history[1:]:
        if record.val_accuracy > top_accuracy or record.val_loss < low_loss:
            found = record.epoch
        top_accuracy, low_loss = max(top_accuracy, record.val_accuracy), min(low_loss, record.val_loss)
    return found


def epochs_to_remove(written: list[int], best_epoch: int, keep: int) -> list[int]:
    """Of the epochs this run wrote, those whose files go: all but the last `keep` and the best (none
    if `keep` is 0)."""
    if keep <= 0:
        return []
    kept = set(sorted(written)[-keep:]) | {best_epoch}
    return [epoch for epoch in sorted(written) if epoch not in kept]
