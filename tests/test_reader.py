"""The Python API (reader.py): what it reads, how a reading is constrained, what it refuses."""

import io

import numpy as np
import pytest
from PIL import Image

from lstm_ocr import arithmetic
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.reader import Constraints, Reader, parse_length


def test_reader_reads_paths_bytes_and_arrays_alike(model, onnx_model, sample):
    for reader in (Reader(model, 3), Reader.onnx(onnx_model)):
        pixels = np.asarray(Image.open(sample))
        readings = [reader.read(sample), reader.read(open(sample, "rb").read()), reader.read(pixels)]
        assert len({(r.text, round(r.confidence, 6)) for r in readings}) == 1
        many = reader.read_many([sample, pixels] * 3)
        assert [r.text for r in many] == [readings[0].text] * 6
        assert reader.read(Image.open(sample)).text == readings[0].text
        assert [r.text for r in reader.read_many(np.stack([pixels, pixels]))] == [readings[0].text] * 2
        assert reader.read_many(iter([])) == []
        with pytest.raises(InputError, match="cannot read a int"):
            reader.read(7)
        with pytest.raises(InputError, match="not a readable image"):
            reader.read(b"not an image")


def test_reader_reads_file_objects_and_defaults_to_the_latest_epoch(model, sample):
    reader = Reader(model)  # the fixture saved epoch 3 only
    assert reader.name == f"{model} epoch 3"
    with open(sample, "rb") as file:
        assert reader.read(file).text == reader.read(sample).text
    assert reader.read(io.BytesIO(open(sample, "rb").read())).text == reader.read(sample).text
    with open(sample) as text_mode, pytest.raises(InputError, match="open it with 'rb'"):
        reader.read(text_mode)


@pytest.mark.parametrize("arguments, message", [
    ({"batch_size": -1}, "batch_size must be an int from 1"), ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"), ({"epoch": 0}, "epoch must be a positive int"),
])
def test_reader_arguments_are_checked(model, arguments, message):
    with pytest.raises(InputError, match=message):
        Reader(model, **({"epoch": 3} | arguments))


def test_lengths_parse_as_n_or_a_range():
    assert parse_length("4") == (4, 4) and parse_length("4-6") == (4, 6) and parse_length(5) == (5, 5)
    assert parse_length(None) is None and parse_length((3, 4)) == (3, 4)
    for bad in ("", "x", "6-4", "0", "-3", "4-", "1-100", True):
        with pytest.raises(InputError, match="--length"):
            parse_length(bad)


def test_constrained_readings_keep_to_the_allowed_characters_and_lengths(model, sample, tmp_path):
    reader = Reader(model, 3)
    for allowed in ("7", "13", "0123456789"):
        for length in (None, 1, "2-3", 4):
            reading = reader.read(sample, allowed=allowed, length=length)
            assert reading.error is None and set(reading.text) <= set(allowed)
            low, high = parse_length(length) or (0, 99)
            assert low <= len(reading.text) <= high
            if length is not None:  # one allowed character repeated needs a blank between each: it fits 80 steps
                assert 0 < reading.confidence <= 1
    assert reader.constraints("7", "4") == Constraints("7", (4, 4))
    with pytest.raises(InputError, match="which the model cannot read"):
        reader.read(sample, allowed="12a")
    with pytest.raises(InputError, match="--allowed"):
        reader.read(sample, allowed="")


def test_a_length_the_model_cannot_hold_is_an_error_reading(model, sample):
    reader = Reader(model, 3)  # 80 steps hold 40 of one character at most (a blank between each)
    reading = reader.read(sample, allowed="7", length=41)
    assert reading.error is not None and "fits the model's 80 output steps" in reading.error
    assert reader.read(sample, allowed="7", length=40).text == "7" * 40 and "error" in reading.to_dict()


def test_untrained_lengths_are_marked(model, sample):
    reader = Reader(model, 3)  # trained on 3-4 digits (the example's)
    assert not reader.read(sample, length=3).untrained_length
    assert reader.read(sample, length=6).untrained_length and reader.read(sample, length=2).untrained_length
    assert reader.read(sample, length=6).to_dict()["untrained_length"] is True


class _Fixed:
    """A model whose output is given: a broken one (NaN, out of range) or a peaked one."""

    def __init__(self, probs: np.ndarray, hp: Hyperparams):
        self.probs, self.hp, self.name = probs, hp, "fixed"

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return np.repeat(self.probs[None], len(images), axis=0)


def test_a_broken_models_output_is_refused_never_read():
    hp = Hyperparams()
    image = np.full((hp.image_width, hp.image_height), 200, np.uint8)[None]
    for broken in (np.full((20, 11), np.nan), np.full((20, 11), np.inf), np.full((20, 11), -0.5),
                   np.full((20, 11), 1.0)):
        (reading,) = Reader(model=_Fixed(broken, hp)).read_inputs(image)
        assert reading.error is not None and "model is broken" in reading.error and reading.text == ""
    peaked = np.eye(11)[[0, 2, 0, 3, 3, 0] + [0] * 14] * 0.99 + 0.01 / 11
    (reading,) = Reader(model=_Fixed(peaked, hp)).read_inputs(image)
    assert reading.error is None and reading.text == "12"


def test_case_folding_models_take_allowed_characters_in_either_case():
    hp = Hyperparams(chars="0123456789abc", case="fold")
    reader = Reader(model=_Fixed(np.full((20, 14), 1 / 14), hp))
    assert reader.constraints("ABc1").allowed == "abc1"


def test_non_finite_outputs_are_refused_under_every_constraint():
    hp = Hyperparams()
    image = np.full((hp.image_width, hp.image_height), 200, np.uint8)[None]
    half = np.full((20, 11), 1 / 11)
    half[5, 3] = np.nan  # one NaN in one step: the rest looks like a probability per step
    for allowed, length in ((None, None), ("13", None), (None, 2), ("7", "1-3")):
        (reading,) = Reader(model=_Fixed(half, hp)).read_inputs(image, Reader(model=_Fixed(half, hp)).constraints(
            allowed, length))
        assert reading.error is not None and "model is broken" in reading.error
        assert reading.to_dict() == {"error": reading.error}  # no text, no confidence 1.0


def test_reader_reads_pil_images_of_any_mode_and_orientation_as_their_files(model, sample, tmp_path):
    reader = Reader(model, 3)
    gray = np.asarray(Image.open(sample).convert("L"))
    deep = tmp_path / "deep.png"
    Image.fromarray(gray.astype(np.uint16) * 257).save(deep)
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.fromarray(gray).transpose(Image.Transpose.ROTATE_180).save(turned, exif=exif, quality=95)
    for path in (deep, turned):
        from_file, from_pil = reader.read(str(path)), reader.read(Image.open(path))
        assert (from_pil.text, from_pil.confidence) == (from_file.text, from_file.confidence)
    assert reader.read(Image.open(deep)).text == reader.read(sample).text  # 16 bits read as 8, not as ''
    upright = reader.network_input(Image.open(turned)).astype(int) - reader.network_input(Image.fromarray(gray))
    assert np.abs(upright).mean() < 3  # upright (JPEG's loss aside); upside down differs by tens


def test_read_many_never_returns_fewer_readings_than_images(model, sample):
    with pytest.raises(InputError, match="batch_size"):
        Reader(model, 3, batch_size=-1)
    assert len(Reader(model, 3, batch_size=1).read_many([sample, sample, sample])) == 3


def _spelling(text: str, hp: Hyperparams, steps: int = 24) -> np.ndarray:
    """A peaked output that reads `text`: each character's class between blanks."""
    classes = [c for cls in hp.classes(text) for c in (0, cls)]
    return np.eye(hp.num_classes)[classes + [0] * (steps - len(classes))] * 0.99 + 0.01 / hp.num_classes


def test_answers_are_parsed_from_the_reading():
    """A reader that answers reads the most probable sum where it is plausible; a reading sure of a text
    that does not parse keeps it, with no answer."""
    hp = Hyperparams(chars=arithmetic.ALPHABET, min_len=4, max_len=9)
    image = np.full((hp.image_width, hp.image_height), 200, np.uint8)[None]
    for text, answer in (("7+3=?", 10), ("2+3×4=", 14), ("12÷4=", 3), ("7+=?", None), ("73=?", None),
                         ("7÷2=", None)):
        (answering,) = Reader(model=_Fixed(_spelling(text, hp), hp), answer=True).read_inputs(image)
        assert answering.text == text and answering.answer == answer
        assert answering.to_dict()["answer"] == answer and "answer" in answering.to_dict()
        (plain,) = Reader(model=_Fixed(_spelling(text, hp), hp)).read_inputs(image)
        assert plain.answer == answer and "answer" not in plain.to_dict()
    unsure = _spelling("73=?", hp)  # the blank between 7 and 3 might be a plus: answering reads the sum
    unsure[2] = unsure[2] * 0.55 + np.eye(hp.num_classes)[hp.classes("+")[0]] * 0.45
    (plain,) = Reader(model=_Fixed(unsure, hp)).read_inputs(image)
    (answering,) = Reader(model=_Fixed(unsure, hp), answer=True).read_inputs(image)
    assert (plain.text, plain.answer) == ("73=?", None) and (answering.text, answering.answer) == ("7+3=?", 10)
    broken = Reader(model=_Fixed(np.full((20, hp.num_classes), np.nan), hp), answer=True).read_inputs(image)[0]
    assert broken.answer is None and "answer" not in broken.to_dict()
    with pytest.raises(InputError, match="answer must be True or False"):
        Reader(model=_Fixed(_spelling("1+1=", hp), hp), answer="yes")
