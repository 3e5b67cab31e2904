"""Where the letters model's training time goes: one training step per operator group (MXNet's
profiler, aggregate stats), and the data path (drawing a varied captcha, the pool, the iterator).

    .venv/bin/python bench/letters_profile.py [--batches 20] [--draws 200] [--crnn_shape wide|compact]

The network is `--recipe letters`'s, the shipped `alnum`'s (docs/letters-model.md), or with
`--crnn_shape compact` the compact front end (docs/letters-speed.md).
"""

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# MXNet runs a training graph in bulks of operators, which its profiler reports as one; profile each.
os.environ.setdefault("MXNET_EXEC_BULK_EXEC_TRAIN", "0")

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from train_step import build_module, random_batch  # noqa: E402  (bench/ is this script's folder)

from lstm_ocr import hyperparameters  # noqa: E402
from lstm_ocr.captcha_generator import CaptchaGen, find_fonts  # noqa: E402
from lstm_ocr.hyperparameters import Hyperparams  # noqa: E402
from lstm_ocr.images import to_float  # noqa: E402
from lstm_ocr.multiproc_data import MPData  # noqa: E402
from lstm_ocr.ocr_iter import OCRIter  # noqa: E402

# operator name -> the group of the network it belongs to
GROUPS = (("RNN", "LSTM"), ("Convolution", "convolutions"), ("BatchNorm", "convolutions"),
          ("Pooling", "convolutions"), ("relu", "convolutions"), ("Activation", "convolutions"),
          ("ctc_loss", "CTC loss"), ("CTCLoss", "CTC loss"), ("FullyConnected", "pred_fc"),
          ("softmax", "pred_fc"), ("adam", "optimizer"), ("sgd", "optimizer"), ("mp_", "optimizer"))


def letters_hp(shape: str = "wide") -> Hyperparams:
    """The letters recipe's hyperparameters with the front end `shape`."""
    return replace(hyperparameters.for_recipe("letters"), crnn_shape=shape)


def group_of(op: str) -> str:
    """The layer group an operator's profiler name belongs to."""
    name = op.removeprefix("_backward_").removeprefix("_contrib_")
    for prefix, group in GROUPS:
        if name.startswith(prefix) or name.lower().startswith(prefix.lower()):
            return group
    return "other (reshape, transpose, copies)"


def profile_step(hp: Hyperparams, batches: int) -> None:
    """Run `batches` training steps under MXNet's profiler and print the time per operator group."""
    mod, batch = build_module(hp), random_batch(hp)
    mod.init_optimizer(optimizer="adam", optimizer_params={"learning_rate": hp.learning_rate}, force_init=True)
    for _ in range(3):
        mod.forward_backward(batch)
        mod.update()
    mx.nd.waitall()
    with tempfile.TemporaryDirectory() as folder:
        mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=os.path.join(folder, "p.json"))
        tic = time.perf_counter()
        mx.profiler.set_state("run")
        for _ in range(batches):
            mod.forward_backward(batch)
            mod.update()
        mx.nd.waitall()
        mx.profiler.set_state("stop")
        wall = time.perf_counter() - tic
        stats = mx.profiler.dumps(reset=True, format="json")
    import json
    table = json.loads(stats)["Time"]
    per_op: dict[str, float] = {}
    for domain, ops in table.items():
        if domain.startswith("operator") or domain == "operator":
            for op, row in ops.items():
                per_op[op] = per_op.get(op, 0.0) + row["Total"]
    groups: dict[str, dict[str, float]] = defaultdict(lambda: {"forward": 0.0, "backward": 0.0})
    for op, total in per_op.items():
        groups[group_of(op)]["backward" if op.startswith("_backward_") else "forward"] += total
    busy = sum(per_op.values())
    print(f"one step, batch {hp.batch_size}: {wall / batches * 1000:.1f} ms wall "
          f"({batches * hp.batch_size / wall:.0f} samples/s under the profiler); operator time "
          f"{busy / batches:.1f} ms a step")
    for group, times in sorted(groups.items(), key=lambda item: -sum(item[1].values())):
        total = times["forward"] + times["backward"]
        print(f"  {group:36s} forward {times['forward'] / batches:6.1f} ms  "
              f"backward {times['backward'] / batches:6.1f} ms  {total / busy:5.1%}")
    top = sorted(per_op.items(), key=lambda item: -item[1])[:12]
    print("  top operators: " + ", ".join(f"{op} {total / batches:.1f} ms" for op, total in top))


def profile_data(hp: Hyperparams, font_path: str, draws: int, num_proc: int) -> None:
    """Drawing speed of one process, the iterator's conversion cost, and what 2 workers take."""
    fonts = find_fonts(font_path, hp.drawn_chars)
    gen = CaptchaGen(fonts, hp, 1, "varied")
    gen.image_u8(gen.random_text())
    tic = time.perf_counter()
    for _ in range(draws):
        gen.image_u8(gen.random_text())
    draw = draws / (time.perf_counter() - tic)
    print(f"drawing a varied captcha (one process, at {hp.seq_length}x{hp.image_height}): {draw:.0f} images/s, "
          f"{1000 / draw:.2f} ms each")
    images = np.zeros((hp.batch_size, hp.image_width, hp.image_height), np.uint8)
    labels = np.zeros((hp.batch_size, hp.num_label), np.int32)
    tic = time.perf_counter()
    for _ in range(200):
        mx.io.DataBatch(data=[mx.nd.array(to_float(images))], label=[mx.nd.array(labels)])
    convert = (time.perf_counter() - tic) / 200
    print(f"OCRIter's batch conversion (uint8 -> float32 NDArray, batch {hp.batch_size}): {convert * 1000:.2f} ms")
    with MPData(num_proc, fonts, hp, 32, 8192 // 32, seed=1, style="varied") as data:
        data.fill()
        it = OCRIter(hp.batch_size * 200, hp, data.sample)
        tic = time.perf_counter()
        for _ in it:
            pass
        seconds = time.perf_counter() - tic
        print(f"pool sampling + OCRIter: {200 * hp.batch_size / seconds:.0f} samples/s, "
              f"{seconds / 200 * 1000:.2f} ms a batch")
        cpu, received, tic = worker_cpu(data), data.received, time.perf_counter()
        while time.perf_counter() - tic < 10:
            data.sample(1)  # takes in the blocks filled meanwhile, handing the oldest back for refilling
            time.sleep(0.02)
        wall = time.perf_counter() - tic
        fresh = (data.received - received) * 32 / wall
        print(f"{num_proc} workers, the trainer idle: {fresh:.0f} fresh samples/s, "
              f"{(worker_cpu(data) - cpu) / wall:.2f} cores of CPU")


def worker_cpu(data: MPData) -> float:
    """CPU seconds the worker processes have used so far (from /proc)."""
    ticks = 0
    for worker in data.workers:
        with open(f"/proc/{worker.pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("font_path", nargs="?", default="font")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--num_proc", type=int, default=2)
    parser.add_argument("--crnn_shape", choices=("wide", "compact"), default="wide")
    parser.add_argument("--skip_data", action="store_true")
    args = parser.parse_args()
    print(f"# {' '.join(sys.argv)}  (load average {os.getloadavg()[0]:.1f})")
    hp = letters_hp(args.crnn_shape)
    profile_step(hp, args.batches)
    if not args.skip_data:
        profile_data(hp, args.font_path, args.draws, args.num_proc)


if __name__ == "__main__":
    main()
