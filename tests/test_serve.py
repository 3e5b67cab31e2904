"""The HTTP service (FastAPI on uvicorn) as a real process on 127.0.0.1: one answer shape for raw,
multipart and JSON bodies, options, feedback into a training folder, batching, and hostile clients."""

import asyncio
import base64
import http.client
import io
import json
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from conftest import PYTHON, ROOT, SHIPPED, assert_all_exit, descendants_of, run_script
from lstm_ocr import checkpoint
from lstm_ocr.captcha_generator import CaptchaGen
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.labelled_data import folder_items
from lstm_ocr.lstm import initial_params, lstm_ocr
from lstm_ocr.reader import Constraints, Reader
from lstm_ocr.serve.batcher import Batcher

SERVE = os.path.join(ROOT, "lstm_ocr_serve.py")
PRETRAINED = os.path.join(SHIPPED, "ocr")
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
def reader(onnx_model) -> Reader:
    return Reader.onnx(onnx_model)


class Service:
    """A running lstm_ocr_serve.py on a free port of 127.0.0.1."""

    def __init__(self, *args: str, python: str = PYTHON, command: list[str] | None = None, cwd: str | None = None):
        self.process = subprocess.Popen([*(command or [python, SERVE]), "--port", "0", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=cwd)
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if "http://127.0.0.1:" not in line:
            self.process.kill()
            raise AssertionError(f"the server did not start: {line!r} {self.process.stderr.read()}")
        self.port = int(line.split("http://127.0.0.1:")[1].split()[0])
        self.started = line  # the start-up line

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data.startswith(b"{") else data, response.headers
        finally:
            connection.close()

    def post_json(self, path: str, payload: dict) -> tuple:
        return self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def raw(self, data: bytes, close_write: bool = True) -> bytes:
        """Send raw bytes on a new connection; everything the server answers until it closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as client:
            client.sendall(data)
            if close_write:
                client.shutdown(socket.SHUT_WR)
            return receive_all(client)

    def stop(self) -> tuple[int, str]:
        children = descendants_of(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.process.communicate(timeout=TIMEOUT)
        finally:
            self.process.kill()
        assert_all_exit([self.process.pid, *children])
        return self.process.returncode, stderr


def receive_all(client: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := client.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


@pytest.fixture
def service(onnx_model, tmp_path):
    running = Service("--onnx", onnx_model, "--max_wait_ms", "200", "--collect", str(tmp_path / "collected"))
    yield running
    if running.process.poll() is None:
        running.stop()


def multipart(files: list[tuple[str, bytes]], fields: dict | None = None) -> tuple[bytes, dict]:
    boundary = "----lstmocrtestboundary"
    body = b""
    for name, value in (fields or {}).items():
        body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()
    for name, data in files:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                 "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def check_reading(found: dict, expected) -> None:
    assert found["text"] == expected.text and len(found["id"]) == 32
    assert found["confidence"] == pytest.approx(expected.confidence, abs=1e-6)
    assert found["untrained_length"] == expected.untrained_length and "error" not in found


def test_raw_multipart_and_json_bodies_answer_one_shape(service, reader, images):
    expected = [reader.read(data) for data in images[:3]]
    status, found, _ = service.request("POST", "/read", images[0])
    assert status == 200 and list(found) == ["readings"] and len(found["readings"]) == 1
    check_reading(found["readings"][0], expected[0])
    assert "name" not in found["readings"][0]
    body, headers = multipart([("a.png", images[0]), ("b.png", images[1]), ("c.png", images[2])],
                              {"csrf_token": "abc123"})  # a text field is ignored, not an error
    status, found, _ = service.request("POST", "/read", body, headers)
    assert status == 200 and [r["name"] for r in found["readings"]] == ["a.png", "b.png", "c.png"]
    for got, want in zip(found["readings"], expected, strict=True):
        check_reading(got, want)
    status, found, _ = service.post_json("/read", {"image": base64.b64encode(images[1]).decode()})
    assert status == 200
    check_reading(found["readings"][0], expected[1])
    data_url = "data:image/png;base64," + base64.b64encode(images[2]).decode()
    status, found, _ = service.post_json("/read", {"images": [base64.b64encode(images[0]).decode(), data_url]})
    assert status == 200 and [r["name"] for r in found["readings"]] == ["image 1", "image 2"]
    check_reading(found["readings"][1], expected[2])
    ids = {r["id"] for r in found["readings"]}
    assert len(ids) == 2
    status, health, _ = service.request("GET", "/health")
    assert status == 200 and health["images_read"] == 7 and health["chars"] == reader.hp.chars
    assert health["collecting"] is True
    assert service.stop()[0] == 0


def test_one_bad_file_spoils_nothing_else(service, reader, images):
    huge = io.BytesIO()
    Image.new("L", (3000, 3000), 255).save(huge, format="PNG")  # 9M pixels in a few kB
    body, headers = multipart([("good.png", images[0]), ("bad.png", b"not an image"), ("huge.png", huge.getvalue()),
                               ("half.png", images[1][:len(images[1]) // 2]), ("also.png", images[3])])
    status, found, _ = service.request("POST", "/read", body, headers)
    assert status == 200
    good, bad, big, half, also = found["readings"]
    check_reading(good, reader.read(images[0]))
    check_reading(also, reader.read(images[3]))
    assert "not a readable image" in bad["error"] and "id" not in bad and "text" not in bad
    assert "pixels" in big["error"] and half["error"]
    status, found, _ = service.post_json("/read", {"images": ["%%%", base64.b64encode(images[0]).decode()]})
    assert status == 200 and "base64" in found["readings"][0]["error"] and found["readings"][1]["text"]


def test_bodies_that_are_no_image_get_a_hint(service, images):
    status, found, _ = service.request("POST", "/read", b"\x00\x01garbage")
    assert status == 400 and "not a readable image" in found["error"] and "--data-binary" in found["error"]
    assert found["readings"][0]["error"]
    status, found, _ = service.request("POST", "/read", images[0].replace(b"\n", b""),  # what curl -d sends
                                       {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and "curl -d" in found["error"] and "--data-binary" in found["error"]
    status, found, _ = service.request("POST", "/read", base64.b64encode(images[0]))
    assert status == 400 and "looks like text" in found["error"] and "JSON" in found["error"]
    for payload in (b'{"image": 5}', b'{"nothing": 1}', b'{"image": '):
        status, found, _ = service.request("POST", "/read", payload, {"Content-Type": "application/json"})
        assert status == 400 and found["error"] and found["readings"] in ([], [{"error": "not a base64 string"}])


def test_limits_methods_and_paths(service, images):
    status, found, _ = service.request("POST", "/read", b"\0" * (2 * 1024 * 1024 + 1))
    assert status == 413 and "over the limit" in found["error"]
    status, found, headers = service.request("GET", "/read")
    assert status == 405 and found["error"] and "POST" in headers["Allow"]
    status, found, _ = service.request("PUT", "/health")
    assert status == 405
    status, found, _ = service.request("GET", "/nothing")
    assert status == 404 and "POST /read" in found["error"]
    body, headers = multipart([], {"csrf_token": "abc"})
    status, found, _ = service.request("POST", "/read", body, headers)
    assert status == 400 and "no file" in found["error"]
    body, headers = multipart([(f"{k}.png", images[0]) for k in range(65)])
    status, found, _ = service.request("POST", "/read", body, headers)
    assert status == 400 and "files" in found["error"].lower()
    status, found, _ = service.request("POST", "/read", images[0])  # still serving
    assert status == 200


def test_options_constrain_the_reading_as_the_reader_does(service, reader, images):
    want = reader.read(images[0], allowed="0189", length=3)
    status, found, _ = service.request("POST", "/read?allowed=0189&length=3", images[0])
    assert status == 200 and found["readings"][0]["text"] == want.text and len(want.text) == 3
    body, headers = multipart([("a.png", images[0])], {"allowed": "0189", "length": "3", "min_confidence": "1"})
    status, found, _ = service.request("POST", "/read", body, headers)
    assert found["readings"][0]["text"] == want.text and found["readings"][0]["rejected"] is True
    status, found, _ = service.post_json("/read", {"image": base64.b64encode(images[0]).decode(),
                                                   "min_confidence": 0.0})
    assert found["readings"][0]["rejected"] is False
    for query, words in (("length=0", "length"), ("allowed=%E2%82%AC", "alphabet"), ("min_confidence=2", "0 to 1"),
                         ("min_confidence=x", "min_confidence")):
        status, found, _ = service.request("POST", f"/read?{query}", images[0])
        assert status == 400 and words in found["error"], found


def test_health_and_the_openapi_schema(service, reader):
    status, health, _ = service.request("GET", "/health")
    assert status == 200 and health["model"].endswith("model.onnx") and health["chars"] == reader.hp.chars
    status, schema, _ = service.request("GET", "/openapi.json")
    assert status == 200 and {"/read", "/feedback", "/health"} <= set(schema["paths"])
    content = schema["paths"]["/read"]["post"]["requestBody"]["content"]
    assert {"image/*", "multipart/form-data", "application/json"} <= set(content)
    status, page, _ = service.request("GET", "/docs")
    assert status == 200 and b"swagger" in page.lower()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_nothing_from_elsewhere(service, page):
    """Offline, /docs works: every script, stylesheet and icon the page loads is served by the service
    itself (fastapi-offline's copies), none from a CDN."""
    status, html, _ = service.request("GET", page)
    assert status == 200
    text = html.decode()
    assets = re.findall(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", text)
    assert any(a.endswith(".js") for a in assets) and (page == "/redoc" or any(a.endswith(".css") for a in assets))
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        status, body, _ = service.request("GET", asset)
        assert status == 200 and len(body) > 1000, (asset, status)


def test_cors_origin(onnx_model, images):
    running = Service("--onnx", onnx_model, "--cors_origin", "https://site.example")
    try:
        status, _, headers = running.request("OPTIONS", "/read", headers={
            "Origin": "https://site.example", "Access-Control-Request-Method": "POST"})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://site.example"
        status, _, headers = running.request("POST", "/read", images[0], {"Origin": "https://site.example"})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://site.example"
        status, _, headers = running.request("POST", "/read", images[0], {"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in headers
    finally:
        assert running.stop()[0] == 0


def test_feedback_files_images_the_trainer_reads(service, tmp_path, images):
    folder = tmp_path / "collected"
    _, found, _ = service.request("POST", "/read", images[0])
    first = found["readings"][0]
    status, answer, _ = service.post_json("/feedback", {"id": first["id"], "correct": True})
    assert status == 200 and answer["filed"] == f"000001_{first['text']}.png"
    assert (folder / answer["filed"]).read_bytes() == images[0]
    status, answer, _ = service.post_json("/feedback", {"id": first["id"], "correct": True})
    assert status == 404 and "already answered" in answer["error"]  # one answer per reading
    _, found, _ = service.request("POST", "/read", images[1])
    second = found["readings"][0]["id"]
    for bad in ("../../etc/x", "", "a/b", "x" * 65):  # never a path, only the model's alphabet
        status, answer, _ = service.post_json("/feedback", {"id": second, "correct": False, "text": bad})
        assert status == 400 and answer["error"], answer
    status, answer, _ = service.post_json("/feedback", {"id": second, "correct": False, "text": "1234"})
    assert status == 200 and answer["filed"] == "000002_1234.png"
    status, answer, _ = service.post_json("/feedback", {"id": "f" * 32, "correct": True})
    assert status == 404
    _, found, _ = service.request("POST", "/read", images[2])
    status, answer, _ = service.post_json("/feedback", {"id": found["readings"][0]["id"], "correct": False})
    assert status == 200 and answer["filed"] is None  # a wrong reading without the right text teaches nothing
    _, found, _ = service.request("POST", "/read", images[3])
    status, answer, _ = service.post_json("/feedback", {"id": found["readings"][0]["id"], "correct": "yes"})
    assert status == 422 and "correct must be a JSON boolean, true or false" in answer["error"]  # never read as true
    assert sorted(os.listdir(folder)) == [".labels.lock", "000001_" + first["text"] + ".png", "000002_1234.png",
                                          "labels.csv"]
    assert [text for _, text in folder_items(str(folder))] == [first["text"], "1234"]


def test_feedback_is_off_by_default_and_the_folder_is_capped(onnx_model, images, tmp_path):
    running = Service("--onnx", onnx_model)
    try:
        _, found, _ = running.request("POST", "/read", images[0])
        status, answer, _ = running.post_json("/feedback", {"id": found["readings"][0]["id"], "correct": True})
        assert status == 404 and "--collect" in answer["error"]
    finally:
        running.stop()
    running = Service("--onnx", onnx_model, "--collect", str(tmp_path / "c"), "--collect_mb", "0.001")
    try:
        _, found, _ = running.request("POST", "/read", images[0])
        status, answer, _ = running.post_json("/feedback", {"id": found["readings"][0]["id"], "correct": True})
        assert status == 507 and "limit" in answer["error"] and os.listdir(tmp_path / "c") == []
    finally:
        running.stop()


def test_images_without_feedback_are_written_unlabelled_at_shutdown(onnx_model, images, tmp_path):
    folder = tmp_path / "c"
    running = Service("--onnx", onnx_model, "--collect", str(folder), "--collect_unlabelled", "10")
    try:
        ids = [running.request("POST", "/read", image)[1]["readings"][0]["id"] for image in images[:3]]
        status, _, _ = running.post_json("/feedback", {"id": ids[0], "correct": False})
        assert status == 200
    finally:
        code, stderr = running.stop()
    assert code == 0 and "Traceback" not in stderr and "--collect_unlabelled 10" in running.started
    assert f"--unlabelled_dir {folder / 'unlabelled'} --train_dir {folder}" in stderr  # the start-up hint
    written = sorted((folder / "unlabelled").iterdir())
    assert [path.read_bytes() for path in written] == images[1:3]  # held at shutdown, never answered


def test_concurrent_requests_are_batched_and_each_gets_its_own_reading(service, reader, images):
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
    assert all(found[k][0] == 200 and found[k][1]["readings"][0]["text"] == expected[k % len(images)]
               for k in range(24))
    _, health, _ = service.request("GET", "/health")
    assert health["images_read"] == 24 and health["batches"] < 24  # several images shared a forward pass
    assert service.stop()[0] == 0


def test_one_batch_serves_requests_with_different_constraints(reader, images):
    batcher = Batcher(reader, max_batch=64, max_wait_ms=1000)
    decoded = [reader.network_input(data) for data in images[:6]]
    inputs = [decoded[0][None], decoded[1][None], decoded[2][None], np.stack(decoded[3:5]), decoded[5][None]]
    constraints = [Constraints(), reader.constraints("0189", 3), reader.constraints(None, "5"), Constraints(),
                   reader.constraints("0189", 3)]  # jobs that share constraints are decoded together

    async def requests() -> list:
        task = asyncio.create_task(batcher.run())
        with batcher.receiving():  # a request still arriving: the batch waits for it, then takes them all
            futures = [asyncio.ensure_future(batcher.read(x, c)) for x, c in zip(inputs, constraints, strict=True)]
            await asyncio.sleep(0)
        found = await asyncio.gather(*futures)
        batcher.stop()
        await task
        return found

    found = asyncio.run(requests())
    assert batcher.batches == 1 and batcher.images == 6
    assert [len(got) for got in found] == [1, 1, 1, 2, 1]
    for x, c, got in zip(inputs, constraints, found, strict=True):
        assert [r.text for r in got] == [r.text for r in reader.read_inputs(x, c)]
    assert len(found[1][0].text) == 3 and set(found[1][0].text) <= set("0189") and len(found[2][0].text) == 5


# Hostile clients (issue 27, class 1)

def post_head(length: int | str, extra: str = "") -> bytes:
    return f"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


def test_pipelined_requests_are_all_answered(service, reader, images):
    answer = service.raw(post_head(len(images[0])) + images[0] + post_head(len(images[1])) + images[1]
                         + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200") == 3
    assert answer.index(reader.read(images[0]).text.encode()) < answer.index(b'"status"')


@pytest.mark.parametrize("head", [
    post_head("6_1_0_5"), post_head("-1"), post_head("5, 6"), post_head(5, "Content-Length: 6\r\n"),
    b"GARBAGE\r\n\r\n", post_head(5, "Transfer-Encoding: chunked\r\n"),
])
def test_malformed_requests_are_400_and_one_log_line(onnx_model, images, head):
    running = Service("--onnx", onnx_model)
    try:
        answer = running.raw(head + b"hello")
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        status, _, _ = running.request("POST", "/read", images[0])
        assert status == 200
    finally:
        code, stderr = running.stop()
    assert code == 0 and "Traceback" not in stderr


def test_client_faults_are_4xx_and_one_line_never_a_traceback(onnx_model, images):
    running = Service("--onnx", onnx_model)
    try:
        answer = running.raw(post_head(len(images[0])) + images[0][:100])  # a short body, then the client's FIN
        assert answer.startswith(b"HTTP/1.1 400"), answer  # the client still reads, after its FIN
        for _ in range(3):  # a reset in the middle of a body
            client = socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT)
            client.sendall(post_head(len(images[0])) + images[0][:100])
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        body, headers = multipart([("a.png", images[0])])
        client = socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT)
        client.sendall(post_head(len(body), f"Content-Type: {headers['Content-Type']}\r\n") + body[:len(body) // 2])
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        status, found, _ = running.request("POST", "/read", images[0])
        assert status == 200 and found["readings"][0]["text"]
    finally:
        code, stderr = running.stop()
    assert code == 0 and "Traceback" not in stderr and "Error" not in stderr, stderr


def test_slow_clients_cannot_hold_the_connection_slots(onnx_model, images):
    """Clients trickling their headers, one byte at a time, hold every slot; a real client still gets in,
    and each trickler is closed at the request deadline however it keeps sending."""
    running = Service("--onnx", onnx_model, "--max_connections", "4", "--request_seconds", "2")
    stop = threading.Event()
    slow = [socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT) for _ in range(4)]
    closed = []

    def trickle(client: socket.socket) -> None:
        head = post_head(len(images[0]))
        try:
            for k in range(len(head)):
                client.sendall(head[k:k + 1])
                if stop.wait(0.2):
                    return
        except OSError:
            closed.append(client)

    threads = [threading.Thread(target=trickle, args=(client,)) for client in slow]
    try:
        for thread in threads:
            thread.start()
        status, found, _ = running.request("POST", "/read", images[0])
        assert status == 200 and found["readings"][0]["text"]
        for client in slow:  # each is answered (408 or 503) and closed, before its headers end
            client.settimeout(TIMEOUT)
            answer = receive_all(client)
            assert answer.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")), answer
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT)
        for client in slow:
            client.close()
        code, stderr = running.stop()
    assert code == 0 and "Traceback" not in stderr


def trickle(client: socket.socket, data: bytes, stop: threading.Event) -> threading.Thread:
    """A started thread sending `data` a byte every 0.1 s until `stop` is set or the server closes."""
    def send() -> None:
        try:
            for k in range(len(data)):
                client.sendall(data[k:k + 1])
                if stop.wait(0.1):
                    return
        except OSError:
            pass

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_each_4xx_answer_is_one_log_line_and_the_start_up_line_names_the_options(onnx_model, images, tmp_path):
    running = Service("--onnx", onnx_model, "--max_body", "100000")
    collecting = Service("--onnx", onnx_model, "--collect", str(tmp_path / "kept"), "--access_log")
    try:
        refused = [running.request("GET", "/nowhere"),                                    # 404
                   running.request("POST", "/read?length=0", images[0]),                   # 400
                   running.request("POST", "/read", b"x" * 200_000),                       # 413
                   running.post_json("/feedback", {"id": "0" * 32, "correct": True}),      # 404: no --collect
                   running.request("PUT", "/read", images[0])]                             # 405
        assert [status for status, _, _ in refused] == [404, 400, 413, 404, 405]
        assert running.request("POST", "/read", images[0])[0] == 200
    finally:
        code, stderr = running.stop()
        collecting.stop()
    assert code == 0 and "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("WARNING: ")]
    assert len(lines) == 5, stderr
    for line, (status, path) in zip(lines, [(404, "/nowhere"), (400, "/read"), (413, "/read"), (404, "/feedback"),
                                            (405, "/read")], strict=True):
        assert line.startswith(f"WARNING: {status} ") and f" {path} from 127.0.0.1:" in line, line
    assert "--collect off" in running.started and "--access_log off" in running.started
    assert f"--collect {tmp_path / 'kept'}" in collecting.started and "--access_log on" in collecting.started


def test_a_trickled_body_is_answered_408_at_the_request_deadline(onnx_model, images):
    running = Service("--onnx", onnx_model, "--request_seconds", "1")
    client = socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT)
    data = images[0]
    client.sendall(post_head(len(data)))
    stop = threading.Event()
    thread = trickle(client, data, stop)
    try:
        answer = receive_all(client)  # answered and closed at the deadline, however the client goes on
        assert answer.startswith(b"HTTP/1.1 408") and b"no complete request" in answer, answer
        status, _, _ = running.request("POST", "/read", images[1])
        assert status == 200
    finally:
        stop.set()
        thread.join(TIMEOUT)
        client.close()
        code, stderr = running.stop()
    assert code == 0 and "Traceback" not in stderr and stderr.count("no complete request") == 1, stderr
    assert stderr.count("WARNING") == 1, stderr  # one line for one client fault


def test_sigterm_finishes_the_request_in_flight_then_exits_0(service, reader, images):
    client = socket.create_connection(("127.0.0.1", service.port), timeout=TIMEOUT)
    data = images[0]
    client.sendall(post_head(len(data)) + data[:100])
    status, _, _ = service.request("GET", "/health")  # the server is up and the request above is being received
    assert status == 200
    service.process.send_signal(signal.SIGTERM)
    with pytest.raises(OSError):  # new connections are refused soon after
        for _ in range(100):
            service.request("GET", "/health")
            threading.Event().wait(0.05)
    client.sendall(data[100:])
    answer = receive_all(client)
    client.close()
    assert answer.startswith(b"HTTP/1.1 200")  # and the connection closed after it (receive_all returned)
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["readings"][0]["text"] == reader.read(data).text
    service.process.wait(TIMEOUT)
    assert service.process.returncode == 0
    assert "Stopped after reading 1 images" in service.process.stderr.read()


def test_a_trickled_body_cannot_keep_a_stopping_server_alive(onnx_model, images):
    running = Service("--onnx", onnx_model, "--request_seconds", "300", "--drain_seconds", "1")
    client = socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT)
    data = images[0]
    client.sendall(post_head(len(data)) + data[:10])
    status, _, _ = running.request("GET", "/health")
    assert status == 200
    running.process.send_signal(signal.SIGTERM)
    stop = threading.Event()
    thread = trickle(client, data[10:], stop)
    try:
        running.process.wait(TIMEOUT)  # raises if the server is still alive after TIMEOUT
    finally:
        stop.set()
        thread.join(TIMEOUT)
        client.close()
        running.process.kill()
    assert running.process.returncode == 0
    assert "Traceback" not in running.process.stderr.read()


def test_the_onnx_service_runs_without_mxnet(onnx_model, reader, images):
    python = os.path.join(ROOT, ".venv-onnx", "bin", "python")
    if not os.path.exists(python):
        pytest.fail("no .venv-onnx: `make onnx-venv` (a dependency of `make test`) creates it")
    running = Service("--onnx", onnx_model, python=python)
    try:
        status, found, _ = running.request("POST", "/read", images[0])
        assert status == 200 and found["readings"][0]["text"] == reader.read(images[0]).text
    finally:
        code, _ = running.stop()
    assert code == 0


def test_an_mxnet_checkpoint_serves_too(tmp_path, images):
    hp = Hyperparams(num_hidden=8)
    prefix = str(tmp_path / "ocr")
    checkpoint.save(prefix, 2, lstm_ocr(hp), initial_params(hp, mx.init.Xavier()), {}, hp)
    running = Service("--prefix", prefix, "--epoch", "2", "--max_batch", "1", "--min_confidence", "0.5")
    try:
        status, found, _ = running.request("POST", "/read", images[1])
        expected = Reader(prefix, 2).read(images[1])
        reading = found["readings"][0]
        assert status == 200 and reading["text"] == expected.text
        assert reading["rejected"] == (expected.confidence < 0.5)
    finally:
        code, _ = running.stop()
    assert code == 0


def test_answer_puts_each_sums_parsed_answer_in_its_reading(font):
    """`--answer` with the shipped arithmetic model: each reading carries the answer the Reader gives."""
    from lstm_ocr import arithmetic

    gen = CaptchaGen([font], Hyperparams(**arithmetic.TEXT_DEFAULTS), seed=5, style="arithmetic")
    sums = []
    for _ in range(4):
        buffer = io.BytesIO()
        gen.render(gen.random_text()).save(buffer, format="PNG")
        sums.append(buffer.getvalue())
    running = Service("--prefix", "arith", "--answer")  # a shipped model's bare name
    try:
        status, found, _ = running.request("POST", "/read", *multipart([(f"{i}.png", b) for i, b in enumerate(sums)]))
        expected = Reader("arith", answer=True).read_many(sums)
        assert status == 200
        assert [r["answer"] for r in found["readings"]] == [e.answer for e in expected]
        assert [r["text"] for r in found["readings"]] == [e.text for e in expected]
        assert any(e.answer is not None for e in expected)  # the shipped model answers some of them
    finally:
        code, _ = running.stop()
    assert code == 0


@pytest.mark.parametrize("args, words", [
    (["--max_batch", "0"], "--max_batch"),
    (["--onnx", "x.onnx", "--epoch", "3"], "not both"),
    (["--onnx", "missing.onnx"], "missing.onnx"),
    (["--max_wait_ms", "-1"], "--max_wait_ms"),
    (["--request_seconds", "0"], "--request_seconds"),
    (["--max_connections", "0"], "--max_connections"),
    (["--length", "x"], "--length"),
    (["--collect_unlabelled", "5"], "needs --collect DIR"),
    (["--collect", "c", "--collect_unlabelled", "-1"], "--collect_unlabelled"),
])
def test_bad_options_are_one_line(args, words):
    """Any free port: the default 8000 may be taken on a busy machine (another service, another test run),
    and the model is checked before the port is bound, so that its error never depends on it."""
    result = run_script("lstm_ocr_serve.py", "--port", "0", *args)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert words in result.stderr and "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line(onnx_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_script("lstm_ocr_serve.py", "--onnx", onnx_model, "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2 and result.stderr.startswith("error: cannot listen on 127.0.0.1:")


def chunked(data: bytes, size: int = 65536, last: bool = True) -> bytes:
    """`data` in chunks of `size` bytes, and the last (empty) chunk unless `last` is False."""
    return b"".join(b"%x\r\n%s\r\n" % (len(data[k:k + size]), data[k:k + size])
                    for k in range(0, len(data), size)) + (b"0\r\n\r\n" if last else b"")


def test_one_body_limit_holds_for_every_route_before_the_body_is_buffered(onnx_model, tmp_path):
    """--max_body bounds /feedback, /health and unknown paths as it does /read, by Content-Length and
    by counting a chunked body as it arrives; the server's memory stays where it was."""
    running = Service("--onnx", onnx_model, "--max_body", "100000", "--collect", str(tmp_path / "c"))
    try:
        before = rss_kb(running.process.pid)
        for path in ("/feedback", "/read", "/health", "/nothing"):
            answer = running.raw(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 f"Content-Length: 100001\r\n\r\n".encode() + b"{" * 100001)
            assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200])
            assert "over the limit" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
            with socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT) as client:
                client.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n".encode())
                try:  # 64 MB offered: the server answers and closes long before
                    for _ in range(1024):
                        client.sendall(chunked(b'"' * 65536, last=False))
                except OSError:
                    pass
                answer = receive_all(client)
            # /health and unknown paths answer 405 and 404 before the body; what follows is still counted,
            # and the connection closed at the limit (one answer per request)
            first = {"/feedback": b"HTTP/1.1 413", "/read": b"HTTP/1.1 413", "/health": b"HTTP/1.1 405",
                     "/nothing": b"HTTP/1.1 404"}[path]
            assert answer.startswith(first) and answer.count(b"HTTP/1.1 ") == 1, (path, answer[:300])
        assert rss_kb(running.process.pid) - before < 50_000
        status, found, _ = running.post_json("/feedback", {"id": "0" * 32, "correct": True})
        assert status == 404  # a body within the limit is still read
    finally:
        code, stderr = running.stop()
    assert code == 0 and "Traceback" not in stderr, stderr


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as file:
        return int(next(line for line in file if line.startswith("VmRSS")).split()[1])


def test_content_length_with_transfer_encoding_is_400_and_closed(service, images):
    """RFC 9112 6.1: such a request may be smuggling a second one; it is refused and the connection
    closed, so nothing after it is read as a request."""
    smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    body = chunked(images[0])
    answer = service.raw(post_head(len(body), "Transfer-Encoding: chunked\r\n") + body + smuggled,
                         close_write=False)
    assert answer.startswith(b"HTTP/1.1 400") and answer.count(b"HTTP/1.1") == 1, answer[:300]
    assert "Transfer-Encoding" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


def test_pipelining_clients_that_never_read_cannot_hold_the_slots(onnx_model, images):
    """40 clients pipeline requests and never read an answer, against --max_connections 32: once their
    answers back up, each is dropped at the write deadline or evicted for a newcomer, and a real
    client is served, never answered 503."""
    running = Service("--onnx", onnx_model, "--max_connections", "32", "--request_seconds", "2")
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    stop = threading.Event()
    hogs = []
    for _ in range(40):
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it reads nothing anyway
        client.settimeout(TIMEOUT)
        client.connect(("127.0.0.1", running.port))
        hogs.append(client)

    def pipeline(client: socket.socket) -> None:
        try:
            while not stop.is_set():
                client.sendall(request * 256)
        except OSError:
            pass

    threads = [threading.Thread(target=pipeline, args=(client,)) for client in hogs]
    try:
        for thread in threads:
            thread.start()
        # until the answers of a hog that was let in backed up past the write deadline (more hogs gone than
        # the 8 evicted at connection time): on a busy machine that takes longer than on a quiet one
        deadline = time.monotonic() + TIMEOUT
        while sum(not thread.is_alive() for thread in threads) <= len(hogs) - 32 and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(3):
            status, found, _ = running.request("POST", "/read", images[0])
            assert status == 200 and found["readings"][0]["text"], (status, found)
    finally:
        stop.set()
        for client in hogs:
            client.close()
        for thread in threads:
            thread.join(TIMEOUT)
        code, stderr = running.stop()
    assert code == 0 and "Traceback" not in stderr, stderr
    assert "read no answer within 2 s" in stderr or "answers unread" in stderr


def model_that(tmp_path, after_warm_up: str) -> str:
    """A script serving with a model whose every forward pass after the warm-up first runs `after_warm_up`
    (Python code: a model thread that breaks, or is slow)."""
    script = tmp_path / "serve_with_model.py"
    script.write_text(f"""import sys, time
sys.path.insert(0, {ROOT!r})
sys.argv[0] = {SERVE!r}
from lstm_ocr import reader
calls, original = [], reader.Reader.probabilities
def probabilities(self, inputs):
    calls.append(len(inputs))
    if len(calls) > 1:
        {after_warm_up}
    return original(self, inputs)
reader.Reader.probabilities = probabilities
from lstm_ocr.serve import app as lstm_ocr_serve
from lstm_ocr.cli import run_main
run_main(lstm_ocr_serve.main)
""")
    return str(script)


def test_an_error_in_the_models_thread_is_a_json_500_and_one_log_line(onnx_model, tmp_path, images):
    script = model_that(tmp_path, "raise RuntimeError('the model thread broke\\n(second line)')")
    running = Service("--onnx", onnx_model, command=[PYTHON, script])
    try:
        for _ in range(3):
            status, found, headers = running.request("POST", "/read", images[0])
            assert status == 500 and "RuntimeError: the model thread broke" in found["error"], found
            assert headers["content-type"] == "application/json"
        status, _, _ = running.request("GET", "/health")
        assert status == 200
    finally:
        code, stderr = running.stop()
    assert code == 0 and "Traceback" not in stderr, stderr
    assert stderr.count("the model failed on a batch of 1 images: RuntimeError") == 3, stderr


def test_abandoned_requests_are_not_computed(onnx_model, tmp_path, images):
    """Requests whose clients reset their connections while they wait for the model are taken out of
    the queue: the model reads only the images of clients still there."""
    busy = tmp_path / "busy"
    script = model_that(tmp_path, f"open({str(busy)!r}, 'a').close(); time.sleep(3)")
    running = Service("--onnx", onnx_model, "--max_batch", "1", command=[PYTHON, script])
    try:
        first = threading.Thread(target=running.request, args=("POST", "/read", images[0]))
        first.start()  # holds the model for 3 s
        for _ in range(TIMEOUT * 20):  # until the first request is in the model; the others queue behind it
            if busy.exists():
                break
            threading.Event().wait(0.05)
        leaving = []
        for _ in range(4):
            client = socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT)
            client.sendall(post_head(len(images[1])) + images[1])
            leaving.append(client)
        threading.Event().wait(1)  # their bodies are read and queued behind the first
        for client in leaving:  # a reset, as a client that times out and goes away
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        first.join(TIMEOUT)
        status, found, _ = running.request("POST", "/read", images[2])
        assert status == 200 and found["readings"][0]["text"]
        _, health, _ = running.request("GET", "/health")
        assert health["images_read"] == 2, health
    finally:
        code, stderr = running.stop()
    assert code == 0 and "Traceback" not in stderr, stderr
    assert stderr.count("left before its answer") == 4, stderr


def test_bad_tiffs_options_and_preflights_are_json_answers(onnx_model, images):
    running = Service("--onnx", onnx_model, "--cors_origin", "https://ok.example")
    try:
        from test_images import _tiff_with_float_strip_offsets
        body, headers = multipart([("good.png", images[0]), ("float.tif", _tiff_with_float_strip_offsets()),
                                   ("also.png", images[3])])
        status, found, _ = running.request("POST", "/read", body, headers)
        assert status == 200 and found["readings"][0]["text"] and found["readings"][2]["text"]
        assert "cannot be decoded (TypeError" in found["readings"][1]["error"]
        for bad in ({"length": True}, {"min_confidence": True}, {"allowed": 12}):
            status, found, _ = running.post_json("/read", {"image": base64.b64encode(images[0]).decode()} | bad)
            assert status == 400 and list(bad)[0] in found["error"], found
        status, found, headers = running.request("OPTIONS", "/read", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert status == 400 and "CORS" in found["error"] and headers["content-type"] == "application/json"
        status, _, headers = running.request("OPTIONS", "/read", headers={
            "Origin": "https://ok.example", "Access-Control-Request-Method": "POST"})
        assert status == 200 and headers["access-control-allow-origin"] == "https://ok.example"
    finally:
        code, stderr = running.stop()
    assert code == 0 and "Traceback" not in stderr, stderr


def test_feedback_folds_case_as_reading_does(tmp_path, images):
    """A case-folding model reads `abc` for an image of `ABC`: the correction `ABC` is filed as `abc`,
    as /read would read it, not refused."""
    from lstm_ocr.serve.feedback import FeedbackStore

    hp = Hyperparams(chars="0123456789abc", case="fold")
    store = FeedbackStore(str(tmp_path / "c"), hp.chars, 60, 10, 1 << 20, 1 << 20, fold=hp.fold)
    assert store.file(store.keep(images[0], "ab1"), False, "ABC1") == "000001_abc1.png"
    assert store.file(store.keep(images[1], "ab2"), True, "AB2") == "000002_ab2.png"  # the reading, in any case
