import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT, assert_all_exit, children_of
from hyperparameters import Hyperparams
from multiproc_data import MPData, WorkerDied


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
        from hyperparameters import Hyperparams
        from multiproc_data import MPData
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
