"""When a run stops early, which epoch is its best, which epochs' files go."""

from lstm_ocr.curves import EpochRecord
from lstm_ocr.early_stopping import TRUSTED_VALIDATION, best, chosen, epochs_to_remove, last_improvement, stop_reason


def history(*scores: tuple[float, float]) -> list[EpochRecord]:
    """Epochs 1.. with these (validation accuracy, validation loss)."""
    return [EpochRecord(epoch, epoch * 100, epoch * 1.0, 0.5, 1.0, accuracy, loss)
            for epoch, (accuracy, loss) in enumerate(scores, 1)]


def test_the_best_epoch_has_the_highest_accuracy_then_the_lowest_loss():
    assert best(history((0.5, 1.0), (0.9, 0.5), (0.8, 0.1))).epoch == 2
    assert best(history((0.9, 0.5), (0.9, 0.3), (0.9, 0.4))).epoch == 2
    assert best(history((0.9, 0.5), (0.9, 0.5))).epoch == 1  # the earliest of equals


def test_no_patience_never_stops():
    assert stop_reason(history((1.0, 0.0), (0.5, 1.0), (0.5, 1.0)), 0, 1000) is None


def test_a_validation_too_small_to_trust_never_stops_a_run_and_reads_the_last_epoch():
    perfect = history((0.9, 0.5), (1.0, 0.1), (0.95, 0.2), (0.9, 0.3), (0.9, 0.3))
    assert "reached 1.0 on 100 images" in stop_reason(perfect[:2], 3, 100)
    assert stop_reason(perfect[:2], 3, TRUSTED_VALIDATION - 1) is None  # 20 images right is no proof
    assert stop_reason(perfect, 3, 100) is not None and stop_reason(perfect, 3, TRUSTED_VALIDATION - 1) is None
    assert chosen(perfect, 100).epoch == 2 and chosen(perfect, TRUSTED_VALIDATION - 1).epoch == 5


def test_patience_counts_epochs_without_a_better_accuracy_or_loss():
    flat = history((0.8, 0.5), (0.7, 0.6), (0.8, 0.5), (0.75, 0.55))
    assert last_improvement(flat) == 1
    assert stop_reason(flat[:3], 3, 100) is None
    assert "--patience 3" in stop_reason(flat, 3, 100)
    # a loss that still falls (a decaying learning rate still teaching) keeps the run going
    learning = history((0.8, 0.5), (0.8, 0.4), (0.78, 0.3), (0.79, 0.29))
    assert last_improvement(learning) == 4 and stop_reason(learning, 2, 100) is None


def test_only_older_epochs_than_the_kept_ones_go_and_never_the_best():
    assert epochs_to_remove([1, 2, 3, 4, 5], best_epoch=1, keep=2) == [2, 3]
    assert epochs_to_remove([1, 2, 3, 4, 5], best_epoch=5, keep=2) == [1, 2, 3]
    assert epochs_to_remove([4, 5], best_epoch=1, keep=1) == [4]  # epoch 1 was not written by this run
    assert epochs_to_remove([1, 2, 3], best_epoch=1, keep=0) == []  # 0: keep every epoch
