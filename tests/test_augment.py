import numpy as np

from lstm_ocr.augment import augment


def test_augmentation_is_seeded_small_and_keeps_the_shape():
    rng = np.random.default_rng(0)
    image = np.full((80, 30), 230, dtype=np.uint8)
    image[20:60, 8:22] = 40  # a dark stroke on a light background
    first = augment(image, np.random.default_rng(5))
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.array_equal(first, augment(image, np.random.default_rng(5)))
    samples = [augment(image, rng) for _ in range(50)]
    assert not any(np.array_equal(sample, image) for sample in samples)
    for sample in samples:  # the stroke stays dark and in place, give or take the jitter
        assert sample[30:50, 11:19].mean() < 120 and sample[:10].mean() > 150
