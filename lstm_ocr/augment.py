"""On-the-fly augmentation of a labelled image at the network's input size: small affine jitter
(shift, scale, rotation), blur, noise and contrast, each drawn from a seeded generator. Every change
keeps the text readable, so the label still holds."""

import cv2
import numpy as np

from lstm_ocr.hyperparameters import AUGMENT


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A randomly jittered copy of a (width, height) uint8 network input."""
    pixels = image.T.astype(np.float32)  # (height, width), as OpenCV sees an image
    height, width = pixels.shape
    angle = rng.uniform(-AUGMENT["rotate_degrees"], AUGMENT["rotate_degrees"])
    scale = 1 + rng.uniform(-AUGMENT["scale"], AUGMENT["scale"])
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    matrix[0, 2] += rng.uniform(-AUGMENT["shift_columns"], AUGMENT["shift_columns"])
    matrix[1, 2] += rng.uniform(-AUGMENT["shift_rows"], AUGMENT["shift_rows"])
    pixels = cv2.warpAffine(pixels, matrix, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < AUGMENT["blur_probability"]:
        pixels = cv2.GaussianBlur(pixels, (3, 3), rng.uniform(*AUGMENT["blur_sigma"]))
    if rng.random() < AUGMENT["contrast_probability"]:
        mean = float(pixels.mean())
        pixels = (pixels - mean) * rng.uniform(*AUGMENT["contrast"]) + mean \
            + rng.uniform(-AUGMENT["brightness"], AUGMENT["brightness"])
    if rng.random() < AUGMENT["noise_probability"]:
        pixels += rng.normal(0, rng.uniform(0, AUGMENT["noise_sigma"]), pixels.shape).astype(np.float32)
    return np.clip(pixels, 0, 255).round().astype(np.uint8).T
