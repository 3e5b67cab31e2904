"""The HTTP service on 127.0.0.1: readings, errors as JSON, batching, and draining on SIGTERM."""

import http.client
import io
import json
import os
import selectors
import signal
import socket
import subprocess
import threading

import mxnet as mx
import pytest
from PIL import Image

import checkpoint
from captcha_generator import CaptchaGen
from conftest import PYTHON, ROOT, assert_all_exit, descendants_of, run_script
from hyperparameters import Hyperparams
from lstm import initial_params, lstm_ocr
from reader import Reader

SERVE = os.path.join(ROOT, "lstm_ocr_serve.py")
PRETRAINED = os.path.join(ROOT, "pretrained", "ocr")
TIMEOUT = 60


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("onnx") / "model.onnx")
    result = run_script("lstm.py", "--prefix", PRETRAINED, "--epoch", "12", "--to", "onnx", "--out", out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    """Eight PNG captchas of different texts."""
    import captcha
    font = os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")
    gen = CaptchaGen([font], Hyperparams(), seed=11)
    found = []
    for text in ("0089", "1234", "567", "9012", "345", "6789", "0246", "1357"):
        buffer = io.BytesIO()
        gen.render(text).save(buffer, format="PNG")
        found.append(buffer.getvalue())
    return found


@pytest.fixture(scope="module")
def first_text(onnx_model, images) -> str:
    """What the model reads in images[0] (drawn as 0089; the captcha's noise is random, so the reading is
    taken from the Reader rather than assumed)."""
    return Reader.onnx(onnx_model).read(images[0]).text


class Service:
    """A running lstm_ocr_serve.py on a free port of 127.0.0.1."""

    def __init__(self, *args: str, python: str = PYTHON):
        self.process = subprocess.Popen([python, SERVE, "--port", "0", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if "http://127.0.0.1:" not in line:
            self.process.kill()
            raise AssertionError(f"the server did not start: {line!r} {self.process.stderr.read()}")
        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def stop(self) -> tuple[int, str]:
        children = descendants_of(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.process.communicate(timeout=TIMEOUT)
        finally:
            self.process.kill()
        assert_all_exit([self.process.pid, *children])
        return self.process.returncode, stderr


@pytest.fixture
def service(onnx_model):
    running = Service("--onnx", onnx_model, "--max_wait_ms", "200")
    yield running
    if running.process.poll() is None:
        running.stop()


def _multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----lstmocrtestboundary"
    body = b""
    for name, data in files:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                 "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_reads_raw_bodies_and_multipart_files_as_the_reader_does(service, onnx_model, images):
    reader = Reader.onnx(onnx_model)
    expected = [reader.read(data).to_dict() for data in images[:3]]
    status, found = service.request("POST", "/read", images[0])
    assert status == 200 and found["text"] == expected[0]["text"] \
        and set(found) == {"text", "confidence", "chars", "untrained_length"}
    assert found["confidence"] == pytest.approx(expected[0]["confidence"], abs=1e-6)
    body, content_type = _multipart([("a.png", images[0]), ("b.png", images[1]), ("c.png", images[2])])
    status, found = service.request("POST", "/read", body, {"Content-Type": content_type})
    assert status == 200 and [r["path"] for r in found["results"]] == ["a.png", "b.png", "c.png"]
    assert [r["text"] for r in found["results"]] == [e["text"] for e in expected]
    status, health = service.request("GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["images_read"] == 4
    assert service.stop()[0] == 0


def test_bad_requests_get_json_errors(service, images, first_text):
    status, found = service.request("POST", "/read", b"not an image")
    assert status == 400 and "not a readable image" in found["error"]
    status, found = service.request("POST", "/read", images[0][: len(images[0]) // 2])
    assert status == 400 and found["error"]
    status, found = service.request("POST", "/read", b"\0" * (2 * 1024 * 1024 + 1))
    assert status == 413 and "over the limit" in found["error"]
    huge = io.BytesIO()
    Image.new("L", (3000, 3000), 255).save(huge, format="PNG")  # 9M pixels in a few kB
    status, found = service.request("POST", "/read", huge.getvalue())
    assert status == 400 and "pixels" in found["error"]
    status, found = service.request("GET", "/nothing")
    assert status == 404 and "error" in found
    body, content_type = _multipart([])
    status, found = service.request("POST", "/read", body, {"Content-Type": content_type})
    assert status == 400 and "error" in found
    for raw in (b"GARBAGE\r\n\r\n", b"PUT /read HTTP/1.1\r\n\r\n",
                b"POST /read HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", service.port), timeout=TIMEOUT) as client:
            client.sendall(raw)
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5") or answer.startswith(b"{")
        assert "error" in json.loads(answer.split(b"\r\n\r\n")[-1])
    status, found = service.request("POST", "/read", images[0])  # still serving
    assert status == 200 and found["text"] == first_text
    assert service.stop()[0] == 0


def test_concurrent_requests_are_batched_and_each_gets_its_own_reading(service, onnx_model, images):
    reader = Reader.onnx(onnx_model)
    expected = [reader.read(data).text for data in images]
    found: dict[int, tuple] = {}

    def post(k: int) -> None:
        found[k] = service.request("POST", "/read", images[k % len(images)])

    threads = [threading.Thread(target=post, args=(k,)) for k in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert sorted(found) == list(range(24))
    assert all(found[k][0] == 200 and found[k][1]["text"] == expected[k % len(images)] for k in range(24))
    _, health = service.request("GET", "/health")
    assert health["images_read"] == 24 and health["batches"] < 24  # several images shared a forward pass
    assert service.stop()[0] == 0


def test_sigterm_finishes_the_request_in_flight_then_exits_0(service, images, first_text):
    client = socket.create_connection(("127.0.0.1", service.port), timeout=TIMEOUT)
    data = images[0]
    client.sendall(f"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data[:100])
    status, _ = service.request("GET", "/health")  # the server is up and the request above is being received
    assert status == 200
    service.process.send_signal(signal.SIGTERM)
    with pytest.raises(OSError):  # new connections are refused soon after
        for _ in range(100):
            service.request("GET", "/health")
            threading.Event().wait(0.05)
    client.sendall(data[100:])
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    client.close()
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["text"] == first_text
    service.process.wait(TIMEOUT)
    assert service.process.returncode == 0
    assert "Stopped after reading 1 images" in service.process.stderr.read()


def test_the_onnx_service_runs_without_mxnet(onnx_model, images, first_text):
    python = os.path.join(ROOT, ".venv-onnx", "bin", "python")
    if not os.path.exists(python):
        pytest.fail("no .venv-onnx: `make onnx-venv` (a dependency of `make test`) creates it")
    running = Service("--onnx", onnx_model, python=python)
    try:
        status, found = running.request("POST", "/read", images[0])
        assert status == 200 and found["text"] == first_text
    finally:
        code, _ = running.stop()
    assert code == 0


def test_an_mxnet_checkpoint_serves_too(tmp_path, images):
    hp = Hyperparams(num_hidden=8)
    prefix = str(tmp_path / "ocr")
    checkpoint.save(prefix, 2, lstm_ocr(hp), initial_params(hp, mx.init.Xavier()), {}, hp)
    running = Service("--prefix", prefix, "--epoch", "2", "--max_batch", "1", "--min_confidence", "0.5")
    try:
        status, found = running.request("POST", "/read", images[1])
        expected = Reader(prefix, 2).read(images[1])
        assert status == 200 and found["text"] == expected.text and found["rejected"] == (expected.confidence < 0.5)
    finally:
        code, _ = running.stop()
    assert code == 0


@pytest.mark.parametrize("args, words", [
    (["--max_batch", "0"], "--max_batch"),
    (["--onnx", "x.onnx", "--epoch", "3"], "not both"),
    (["--onnx", "missing.onnx"], "missing.onnx"),
    (["--max_wait_ms", "-1"], "--max_wait_ms"),
])
def test_bad_options_are_one_line(args, words):
    result = run_script("lstm_ocr_serve.py", *args)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert words in result.stderr and "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line(onnx_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_script("lstm_ocr_serve.py", "--onnx", onnx_model, "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2 and result.stderr.startswith("error: cannot listen on 127.0.0.1:")
