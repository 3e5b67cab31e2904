import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import ROOT, assert_all_exit, children_of
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.images import read_network_input
from lstm_ocr.multiproc_data import FolderSource, MPData, WorkerDied


def test_pool_gives_valid_batches_and_stops_its_workers(font):
    hp = Hyperparams()
    with MPData(2, [font], hp, block_size=8, pool_blocks=4, seed=0) as data:
        pids = [w.pid for w in data.workers]
        assert set(pids) <= set(children_of(os.getpid()))
        images, labels = data.sample(16)
        assert images.shape == (16, 80, 30) and images.dtype == np.uint8
        assert labels.shape == (16, 4) and labels.dtype == np.int32
        assert labels[:, :3].min() >= 1 and labels.max() <= 10
        assert set(labels[:, 3].tolist()) <= set(range(11))
    assert_all_exit(pids, timeout=0)


def test_fresh_blocks_are_never_repeated(font):
    with MPData(1, [font], Hyperparams(), block_size=4, pool_blocks=1, seed=1) as data:
        first, second = data.take_block()[0], data.take_block()[0]
    assert not np.array_equal(first, second)


def test_a_killed_worker_is_reported_instead_of_waited_for(font):
    with MPData(1, [font], Hyperparams(), block_size=4, pool_blocks=1, seed=2) as data:
        data.sample(4)
        os.kill(data.workers[0].pid, signal.SIGKILL)
        data.workers[0].join()
        with pytest.raises(WorkerDied, match="died"):
            data.sample(4)


def test_workers_exit_when_their_parent_is_killed(font, tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from lstm_ocr.hyperparameters import Hyperparams
        from lstm_ocr.multiproc_data import MPData
        if __name__ == "__main__":
            data = MPData(2, [{font!r}], Hyperparams(), block_size=4, pool_blocks=2)
            data.sample(4)
            print(" ".join(str(w.pid) for w in data.workers), flush=True)
            time.sleep(60)
    """)
    path = tmp_path / "parent.py"
    path.write_text(script)
    parent = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2
    parent.kill()
    parent.wait()
    assert_all_exit(pids)


def _folder(tmp_path, count: int, hp: Hyperparams, bad: int = 0) -> FolderSource:
    """`count` images of distinct shades (image i has label i % 10 + 1 in its first place), the last
    `count // 4` held out; the first `bad` files are not images."""
    paths = []
    for i in range(count):
        path = tmp_path / f"{i:03d}.png"
        if i < bad:
            path.write_bytes(b"not an image")
        else:
            picture = Image.new("L", (160, 60), 5 * i)
            ImageDraw.Draw(picture).rectangle((40 + i, 15, 100, 45), fill=250 - 5 * i)
            picture.save(path)
        paths.append(str(path))
    labels = np.zeros((count, hp.num_label), dtype=np.int32)
    labels[:, 0] = np.arange(count) % 10 + 1
    labels[:, 1] = np.arange(count) // 10 + 1
    return FolderSource(paths, labels, np.arange(count) < count - count // 4, augment=False)


def test_a_folder_is_decoded_once_in_the_workers_and_only_training_images_are_drawn(tmp_path):
    hp = Hyperparams()
    source = _folder(tmp_path, 40, hp)
    with MPData(2, [], hp, block_size=8, pool_blocks=4, seed=0, folder=source) as data:
        assert data.decode() == {}
        for i, path in enumerate(source.paths):
            assert np.array_equal(data.folder.images[i], read_network_input(path, hp))
        data.release()
        images, labels = data.sample(64)
    indices = (labels[:, 1] - 1) * 10 + labels[:, 0] - 1
    assert set(indices.tolist()) <= set(range(30))  # never one of the 10 held out
    for image, index in zip(images, indices, strict=True):
        assert np.array_equal(image, read_network_input(source.paths[index], hp))  # --augment 0: as decoded


def test_unreadable_images_are_reported_and_augmentation_changes_every_sample(tmp_path):
    hp = Hyperparams()
    source = _folder(tmp_path, 20, hp, bad=3)
    source.augment = True
    with MPData(1, [], hp, block_size=8, pool_blocks=2, seed=0, folder=source) as data:
        bad = data.decode()
        assert sorted(bad) == [0, 1, 2] and "not a readable image" in bad[0]
        data.release()
        images, labels = data.sample(32)
        indices = (labels[:, 1] - 1) * 10 + labels[:, 0] - 1
        assert set(indices.tolist()) <= set(range(3, 15))  # neither a bad image nor a held-out one
        decoded = data.folder.images
        assert not any(np.array_equal(image, original) for image in images for original in decoded)


def test_every_format_and_mode_that_inference_reads_is_decoded(tmp_path):
    from lstm_ocr import labelled_data

    picture = Image.new("RGB", (120, 45), (230, 220, 200))
    ImageDraw.Draw(picture).rectangle((30, 10, 90, 35), fill=(20, 40, 160))
    picture.save(tmp_path / "a_1.jpg")
    picture.convert("P").save(tmp_path / "b_2.gif")
    picture.save(tmp_path / "c_3.bmp")
    picture.save(tmp_path / "d_4.webp")
    picture.convert("L").save(tmp_path / "e_5.tif")
    picture.convert("RGBA").save(tmp_path / "f_6.png")
    Image.fromarray(np.asarray(picture.convert("L"), dtype=np.uint16) * 257).save(tmp_path / "g_7.png")
    items = labelled_data.folder_items(str(tmp_path))
    assert [text for _, text in items] == list("1234567")
    hp = Hyperparams()
    labels = np.zeros((len(items), hp.num_label), dtype=np.int32)
    source = FolderSource([path for path, _ in items], labels, np.ones(len(items), dtype=bool), augment=False)
    with MPData(2, [], hp, block_size=4, pool_blocks=1, seed=0, folder=source) as data:
        assert data.decode() == {}
        for image in data.folder.images:  # the dark box stands out from the light background in each
            assert image[35:45, 12:18].mean() < 120 < image[:5].mean()
