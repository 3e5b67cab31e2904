"""The HTTP service (FastAPI on uvicorn) under load, on 127.0.0.1: images/s and p50/p99 latency at several
concurrencies, batching on and off, beside the ceiling (the Reader alone on the same images already turned
into network inputs, batched), and ddddocr reading the same images one at a time in-process, in the same run.

    .venv/bin/python bench/serve.py [--prefix ocr --epoch 12] [--requests 400] [--levels 1,8,32]

The model is exported to ONNX and served by `lstm_ocr_serve.py --onnx` (with `.venv-onnx`'s Python
when it exists, as deployed; `--backend mxnet` serves the checkpoint instead). Each level sends
`--requests` POST /read requests of distinct captcha PNGs from that many client threads, each on
its own kept-alive connection, and stops early after `--seconds`. ddddocr (requirements-bench.txt)
is skipped with a note when it is not installed. Bounded: every request has a timeout, and the
server is stopped (SIGTERM, then kill) whatever happens.
"""

import argparse
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from lstm_ocr.captcha_generator import CaptchaGen  # noqa: E402
from lstm_ocr.hyperparameters import Hyperparams  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONNX_PYTHON = os.path.join(ROOT, ".venv-onnx", "bin", "python")
TIMEOUT = 30


def captchas(count: int, font: str) -> tuple[list[bytes], list[str]]:
    """`count` distinct captcha PNGs (as a client would send them) and their texts."""
    gen = CaptchaGen([font], Hyperparams(), seed=1)
    found, texts = [], []
    for _ in range(count):
        text = gen.random_text()
        buffer = io.BytesIO()
        gen.render(text).save(buffer, format="PNG")
        found.append(buffer.getvalue())
        texts.append(text)
    return found, texts


class Server:
    def __init__(self, command: list[str]):
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.process.stdout.readline()
        if "http://127.0.0.1:" not in line:
            self.stop()
            raise SystemExit(f"the server did not start: {line!r} {self.process.stderr.read()[-2000:]}")
        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Tally:
    """Latencies, texts and wall time of one configuration over all its rounds."""

    def __init__(self):
        self.latencies: list[float] = []
        self.texts: dict[int, str] = {}
        self.errors: list[str] = []
        self.wall = 0.0
        self.cpu = 0.0  # CPU seconds: the server's under load; this process's for the model alone
        self.client_cpu = 0.0  # the load's client threads (this process)
        self.png_cpu = 0.0  # the model alone: decoding the PNGs into network inputs

    def line(self, name: str, labels: list[str]) -> str:
        ms = np.array(self.latencies or [float("nan")]) * 1000
        right = sum(text == labels[k % len(labels)] for k, text in self.texts.items()) / max(1, len(self.texts))
        errors = f"  errors={len(self.errors)}" if self.errors else ""
        return (f"{name:<38} {self.rate():8.1f} images/s   p50 {np.percentile(ms, 50):6.1f} ms"
                f"   p99 {np.percentile(ms, 99):6.1f} ms   accuracy {right:.3f}   ({len(self.latencies)} images)"
                + errors)

    def rate(self) -> float:
        return len(self.latencies) / max(self.wall, 1e-9)


def process_cpu(pid: int) -> float:
    """CPU seconds a process has used, all its threads (Linux's /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, images: list[bytes], concurrency: int, requests: int, seconds: float, tally: Tally,
         first: int = 0, server_pid: int | None = None) -> None:
    """`requests` POST /read (images from `first` on) from `concurrency` threads, each on its own kept-alive
    connection, for at most `seconds`; added to `tally`, with the CPU the server and the clients used."""
    counter = iter(range(first, first + requests))
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        try:
            while time.monotonic() < deadline:
                with lock:
                    k = next(counter, None)
                if k is None:
                    return
                tic = time.perf_counter()
                connection.request("POST", "/read", body=images[k % len(images)])
                response = connection.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - tic
                with lock:
                    tally.latencies.append(elapsed)
                    if response.status == 200:
                        tally.texts[k] = json.loads(body)["readings"][0]["text"]
                    else:
                        tally.errors.append(body.decode()[:200])
        except OSError as error:
            with lock:
                tally.errors.append(repr(error))
        finally:
            connection.close()

    server_before, client_before = process_cpu(server_pid) if server_pid else 0.0, time.process_time()
    tic = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + TIMEOUT)
    tally.wall += time.perf_counter() - tic
    tally.client_cpu += time.process_time() - client_before
    tally.cpu += process_cpu(server_pid) - server_before if server_pid else 0.0


def model_alone(model: str, images: list[bytes], batch: int, count: int, tally: Tally, first: int = 0) -> None:
    """The ONNX model and decoding alone, in this process, on decoded images in batches of `batch`:
    the most any server of this model can do, and how much batching can add to it."""
    sys.path.insert(0, ROOT)
    from lstm_ocr.reader import Reader

    reader = Reader.onnx(model, batch_size=batch)
    before = time.process_time()
    inputs = np.stack([reader.network_input(images[(first + k) % len(images)]) for k in range(count)])
    tally.png_cpu += time.process_time() - before
    reader.read_inputs(inputs[:batch])  # warm-up
    tic, before = time.perf_counter(), time.process_time()
    for start in range(0, count, batch):
        readings = reader.read_inputs(inputs[start:start + batch])
        tally.texts.update({first + start + k: r.text for k, r in enumerate(readings)})
    elapsed = time.perf_counter() - tic
    tally.cpu += time.process_time() - before
    tally.latencies += [elapsed / count] * count  # per image, on average
    tally.wall += elapsed


def ddddocr_reader():
    try:
        import ddddocr
    except ImportError:
        return None
    return ddddocr.DdddOcr(show_ad=False)


def ddddocr_load(ocr, images: list[bytes], count: int, seconds: float, tally: Tally, first: int = 0) -> None:
    """ddddocr reading `count` images one at a time in this process (at most `seconds`)."""
    deadline = time.monotonic() + seconds
    tic = time.perf_counter()
    for k in range(first, first + count):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        tally.texts[k] = ocr.classification(images[k % len(images)])
        tally.latencies.append(time.perf_counter() - start)
    tally.wall += time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="ocr")
    parser.add_argument("--epoch", type=int, default=12)
    parser.add_argument("--backend", choices=("onnx", "mxnet"), default="onnx")
    parser.add_argument("--images", type=int, default=300, help="distinct captchas [default 300]")
    parser.add_argument("--requests", type=int, default=400, help="requests per level [default 400]")
    parser.add_argument("--seconds", type=float, default=30, help="time limit per level [default 30]")
    parser.add_argument("--levels", default="1,8,32", help="client concurrencies [default 1,8,32]")
    parser.add_argument("--max_batch", type=int, default=64)
    parser.add_argument("--max_wait_ms", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds [default 2]")
    parser.add_argument("--ddddocr", type=int, default=200, help="images ddddocr reads [default 200]")
    parser.add_argument("--font", default=os.path.join(ROOT, "font", "DejaVuSans.ttf"))
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    print(f"# {' '.join(sys.argv)}")
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  ({os.cpu_count()} CPUs)")
    images, labels = captchas(args.images, args.font)
    with tempfile.TemporaryDirectory() as folder:
        if args.backend == "onnx":
            model = os.path.join(folder, "model.onnx")
            subprocess.run([sys.executable, os.path.join(ROOT, "lstm.py"), "--prefix", args.prefix, "--epoch",
                            str(args.epoch), "--to", "onnx", "--out", model], check=True, capture_output=True)
            python = ONNX_PYTHON if os.path.exists(ONNX_PYTHON) else sys.executable
            serving = ["--onnx", model]
        else:
            python, serving = sys.executable, ["--prefix", args.prefix, "--epoch", str(args.epoch)]
        print(f"# server: {os.path.relpath(python, ROOT)} lstm_ocr_serve.py {serving[0]} ... --max_wait_ms "
              f"{args.max_wait_ms:g} --max_batch {args.max_batch} (batching on) or 1 (off); "
              f"{args.rounds} interleaved rounds of {args.requests // args.rounds} requests per level and mode")
        servers: dict[str, Server] = {}
        ocr = ddddocr_reader() if args.ddddocr > 0 else None
        tallies = {(mode, level): Tally() for level in levels for mode in ("on", "off")}
        dddd, alone = Tally(), {1: Tally(), args.max_batch: Tally()}
        per_round = args.requests // args.rounds
        try:
            for mode, max_batch in (("on", args.max_batch), ("off", 1)):
                servers[mode] = Server([python, os.path.join(ROOT, "lstm_ocr_serve.py"), *serving, "--port", "0",
                                        "--max_batch", str(max_batch), "--max_wait_ms", str(args.max_wait_ms)])
                load(servers[mode].port, images, 4, 40, args.seconds, Tally())  # warm-up
            for number in range(args.rounds):  # A, B, A, B: the machine's drift falls on both alike
                for level in levels:
                    for mode in ("on", "off"):
                        load(servers[mode].port, images, level, per_round, args.seconds, tallies[mode, level],
                             first=number * per_round, server_pid=servers[mode].process.pid)
                if args.backend == "onnx":
                    for batch, tally in alone.items():
                        model_alone(model, images, batch, per_round, tally, first=number * per_round)
                if ocr is not None:
                    ddddocr_load(ocr, images, args.ddddocr // args.rounds, args.seconds, dddd,
                                 first=number * (args.ddddocr // args.rounds))
        finally:
            codes = {mode: server.stop() for mode, server in servers.items()}
    for level in levels:
        for mode in ("on", "off"):
            print(tallies[mode, level].line(f"serve, batching {mode}, concurrency {level}", labels))
    for batch, tally in alone.items() if args.backend == "onnx" else ():
        print(tally.line(f"model alone, batches of {batch}", labels).replace(" p50", " per image"
                                                                              ).split("   p99")[0])
    if ocr is None and args.ddddocr > 0:
        print("ddddocr: not installed (pip install -r requirements-bench.txt numpy==1.23.5)")
    elif ocr is not None:
        print(dddd.line("ddddocr 1.6.1, in-process, one by one", labels))
    ceiling = alone.get(args.max_batch)
    if ceiling is not None and ceiling.latencies:
        for level in levels:
            print(f"# concurrency {level}, batching on: {tallies['on', level].rate() / ceiling.rate():.0%} of the "
                  f"ceiling (the model and decoding alone, batches of {args.max_batch})")
    if ceiling is not None and ceiling.cpu > 0 and tallies["on", levels[-1]].cpu > 0:
        busiest = tallies["on", levels[-1]]
        print(f"# CPU per image: the server at concurrency {levels[-1]}, batching on, "
              f"{1000 * busiest.cpu / len(busiest.latencies):.2f} ms (its clients "
              f"{1000 * busiest.client_cpu / len(busiest.latencies):.2f} ms); the model and decoding alone, batches of "
              f"{args.max_batch}, {1000 * ceiling.cpu / len(ceiling.latencies):.2f} ms; decoding a PNG "
              f"{1000 * ceiling.png_cpu / len(ceiling.latencies):.2f} ms")
    for level in levels[1:]:
        on = tallies["on", level]
        base = tallies["on", levels[0]]
        print(f"# concurrency {level} / {levels[0]}, batching on: "
              f"{on.rate() / base.rate():.2f}x images/s")
    if any(codes.values()):
        print(f"# a server exited with {codes}")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
