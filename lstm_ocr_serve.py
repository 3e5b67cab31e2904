"""An HTTP service that reads captchas, batching concurrent requests into one forward pass.

    python lstm_ocr_serve.py --prefix pretrained/ocr --epoch 12 --port 8000
    python lstm_ocr_serve.py --onnx model.onnx --port 8000          # ONNX Runtime, no MXNet

    curl --data-binary @sample.png http://127.0.0.1:8000/read
    {"text": "0089", "confidence": 0.9991, "chars": [{"char": "0", "probability": 0.9999}, ...]}
    curl -F file=@a.png -F file=@b.png http://127.0.0.1:8000/read
    {"results": [{"path": "a.png", "text": ...}, {"path": "b.png", "text": ...}]}
    curl http://127.0.0.1:8000/health

`POST /read` takes the image as the body, or one or more images as multipart/form-data files. A bad
image is answered 400 with {"error": ...}; a body over --max_body bytes 413. Requests that arrive
together are read in one batch of up to --max_batch images: the batcher starts a batch as soon as
the model is free, and waits at most --max_wait_ms for requests already being received. SIGTERM
or Ctrl-C stops accepting, finishes the requests in flight, and exits 0.
"""

import email.message
import email.parser
import email.policy
import json
import select
import signal
import sys
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from cli import ArgumentParser, InputError, check_count, run_main
from hyperparameters import (
    SERVE_IDLE_SECONDS,
    SERVE_MAX_BODY_BYTES,
    SERVE_MAX_CONNECTIONS,
    SERVE_MAX_FILES,
    SERVE_MAX_PIXELS,
)
from reader import Reader, Reading, add_model_options, check_model_options, open_reader

POLL_SECONDS = 0.1  # how often an idle kept-alive connection looks whether the server is draining
MOST_BATCH = 1024
DISCARD_FACTOR = 4  # a refused body up to 4 x --max_body is read and dropped (see Handler._discard)


class _Job:
    """One image waiting for the batcher: its network input, then its reading or error."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.done = threading.Event()
        self.reading: Reading | None = None
        self.error: BaseException | None = None


class Batcher:
    """Runs the model on batches of the images that handler threads submit, in one thread."""

    def __init__(self, reader: Reader, max_batch: int, max_wait_ms: float):
        self.reader, self.max_batch, self.max_wait = reader, max_batch, max_wait_ms / 1000
        self._queue: deque[tuple[float, _Job]] = deque()
        self._changed = threading.Condition()
        self._receiving = 0  # requests whose bodies are being read or decoded: worth waiting for
        self._stopping = False
        self.batches = self.images = 0
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def receiving(self, change: int) -> None:
        with self._changed:
            self._receiving += change
            self._changed.notify()

    def read(self, images: list[np.ndarray]) -> list[Reading]:
        """Readings of network inputs, once the batcher has run them (in one batch or several)."""
        jobs = [_Job(image) for image in images]
        with self._changed:
            now = time.monotonic()
            self._queue.extend((now, job) for job in jobs)
            self._changed.notify()
        for job in jobs:
            job.done.wait()
            if job.error is not None:
                raise job.error
        return [job.reading for job in jobs]

    def _take(self) -> list[_Job] | None:
        with self._changed:
            while not self._queue and not self._stopping:
                self._changed.wait()
            if not self._queue:
                return None
            deadline = self._queue[0][0] + self.max_wait
            while (len(self._queue) < self.max_batch and self._receiving > 0 and not self._stopping
                   and time.monotonic() < deadline):
                self._changed.wait(deadline - time.monotonic())
            count = min(self.max_batch, len(self._queue))
            return [self._queue.popleft()[1] for _ in range(count)]

    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            try:
                readings = self.reader.read_inputs(np.stack([job.image for job in jobs]))
                for job, reading in zip(jobs, readings, strict=True):
                    job.reading = reading
            except Exception as error:  # handed to each waiting request, which answers 500
                for job in jobs:
                    job.error = error
            self.batches += 1
            self.images += len(jobs)
            for job in jobs:
                job.done.set()

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        self._thread.join()


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def multipart_files(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each file part of a multipart/form-data body."""
    header = email.message.EmailMessage()
    header["Content-Type"] = content_type
    boundary = header.get_boundary()
    if boundary and body.count(b"--" + boundary.encode("latin-1")) > SERVE_MAX_FILES + 1:  # before parsing them
        raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"more than {SERVE_MAX_FILES} parts in one request")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise HttpError(HTTPStatus.BAD_REQUEST, "a multipart body without parts (check the boundary)")
    files = []
    for part in message.iter_parts():
        if part.get_content_disposition() != "form-data" and part.get_filename() is None:
            continue
        data = part.get_payload(decode=True)
        if data is None:
            continue
        files.append((part.get_filename() or part.get_param("name", header="content-disposition") or "", data))
    if not files:
        raise HttpError(HTTPStatus.BAD_REQUEST, "the multipart body holds no file")
    if len(files) > SERVE_MAX_FILES:
        raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"{len(files)} files in one request, over the limit of {SERVE_MAX_FILES}")
    return files


class Handler(BaseHTTPRequestHandler):
    """GET /health, POST /read; every answer is JSON."""

    protocol_version = "HTTP/1.1"  # keep-alive: a client sends many requests over one connection
    server_version = "lstm-ocr"
    timeout = SERVE_IDLE_SECONDS  # a stalled read or write of a request gives up after this long
    disable_nagle_algorithm = True  # small answers go out at once, not after the client's delayed ACK
    server: "Server"

    def log_message(self, format: str, *args) -> None:  # noqa: A002  (the base class's name)
        if self.server.access_log:
            super().log_message(format, *args)

    def handle_one_request(self) -> None:
        """Wait for the next request on a kept-alive connection, unless the server is draining."""
        idle_since = time.monotonic()
        while not select.select([self.connection], [], [], POLL_SECONDS)[0]:
            if self.server.draining.is_set() or time.monotonic() - idle_since > SERVE_IDLE_SECONDS:
                self.close_connection = True
                return
        super().handle_one_request()

    def _send(self, status: HTTPStatus, payload: dict) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.server.draining.is_set() or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        if not hasattr(self, "_headers_buffer"):  # an HTTP/0.9 request line: no headers are sent
            self._headers_buffer = []
        if self.request_version != "HTTP/0.9":
            self._headers_buffer.append(b"\r\n")  # end_headers(), with the body in the same write
        self._headers_buffer.append(body)
        self.flush_headers()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's errors (bad request line, unknown method) as JSON too."""
        self.close_connection = True
        self._send(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})

    def handle_expect_100(self) -> bool:
        """Refuse a body that is too large before the client sends it (`Expect: 100-continue`)."""
        try:
            self._check_length()
        except HttpError as error:
            self._send(error.status, {"error": str(error)})
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/health":
            return self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}; POST /read or GET /health"})
        hp = self.server.reader.hp
        self._send(HTTPStatus.OK, {"status": "draining" if self.server.draining.is_set() else "ok",
                                   "chars": hp.chars, "image_width": hp.image_width, "image_height": hp.image_height,
                                   "images_read": self.server.batcher.images, "batches": self.server.batcher.batches})

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/read":
            self.close_connection = True  # the body is not read
            return self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}; POST images to /read"})
        self.server.batcher.receiving(+1)
        receiving = True
        try:
            images, names = self._images()
            self.server.batcher.receiving(-1)
            receiving = False
            readings = self.server.batcher.read(images)
        except HttpError as error:
            return self._send(error.status, {"error": str(error)})
        except InputError as error:
            return self._send(HTTPStatus.BAD_REQUEST, {"error": " ".join(str(error).split())})
        except Exception as error:
            self.log_error("internal error: %r", error)
            return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(error).__name__}"})
        finally:
            if receiving:
                self.server.batcher.receiving(-1)
        results = [self.server.result(reading) for reading in readings]
        if names is None:
            return self._send(HTTPStatus.OK, results[0])
        self._send(HTTPStatus.OK, {"results": [{"path": name} | result for name, result in zip(names, results,
                                                                                               strict=True)]})

    def _check_length(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length (chunked bodies are "
                                                        "not accepted)")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "a POST /read needs a Content-Length") from None
        if length > self.server.max_body or length < 0:
            self.close_connection = True  # the body is not read
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"the body is {length} bytes, over the limit of {self.server.max_body}")
        return length

    def _body(self) -> bytes:
        try:
            length = self._check_length()
        except HttpError as error:
            self._discard()
            raise error
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise HttpError(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {length} bytes")
        return body

    def _discard(self) -> None:
        """Read and drop a refused body of up to DISCARD_FACTOR times the limit, so that the client,
        still sending it, gets the answer rather than a broken connection; a larger one is not read."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return
        if 0 < length <= DISCARD_FACTOR * self.server.max_body:
            while length > 0 and (chunk := self.rfile.read(min(length, 1 << 16))):
                length -= len(chunk)

    def _images(self) -> tuple[list[np.ndarray], list[str] | None]:
        """The request's images as network inputs, and their names (None for a raw body)."""
        body = self._body()
        reader, pixels = self.server.reader, self.server.max_pixels
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/"):
            files = multipart_files(content_type, body)
            return [reader.network_input(data, name or f"file {k + 1}", pixels)
                    for k, (name, data) in enumerate(files)], [name for name, _ in files]
        return [reader.network_input(body, "the image", pixels)], None


class Server(ThreadingHTTPServer):
    """One thread per connection (at most SERVE_MAX_CONNECTIONS), one batcher thread for the model."""

    daemon_threads = False
    request_queue_size = 128  # the listen backlog: socketserver's default of 5 drops bursts of connections
    block_on_close = True  # server_close() waits for every connection's thread: in-flight requests finish

    def __init__(self, address: tuple[str, int], reader: Reader, batcher: Batcher, max_body: int, max_pixels: int,
                 min_confidence: float | None, access_log: bool):
        self.reader, self.batcher = reader, batcher
        self.max_body, self.max_pixels, self.min_confidence = max_body, max_pixels, min_confidence
        self.access_log = access_log
        self.draining = threading.Event()
        self._slots = threading.BoundedSemaphore(SERVE_MAX_CONNECTIONS)
        super().__init__(address, Handler)

    def result(self, reading: Reading) -> dict:
        found = reading.to_dict()
        if self.min_confidence is not None:
            found["rejected"] = reading.confidence < self.min_confidence
        return found

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                body = json.dumps({"error": "too many connections; retry later"}).encode()
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(server: Server, stop: threading.Event) -> None:
    """Serve until `stop` is set; then stop accepting, let the requests in flight finish, and return."""
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="accept")
    loop.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.draining.set()
        server.shutdown()  # the accept loop ends: no new connections
        loop.join()
        server.server_close()  # closes the socket, then joins every connection's thread
        server.batcher.stop()


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    add_model_options(parser, "serve this ONNX model (lstm.py --to onnx) with ONNX Runtime; MXNet is not needed",
                      'add "rejected": true to readings whose confidence is below X')
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [default 127.0.0.1]")
    parser.add_argument("--port", type=int, default=8000, help="port [default 8000; 0: any free port]")
    parser.add_argument("--max_batch", type=int, default=64, help="images per forward pass at most [default 64; "
                                                                   "1: no batching]")
    parser.add_argument("--max_wait_ms", type=float, default=5.0,
                        help="how long a batch may wait for requests being received [default 5]")
    parser.add_argument("--max_body", type=int, default=SERVE_MAX_BODY_BYTES,
                        help=f"largest request body in bytes [default {SERVE_MAX_BODY_BYTES}]")
    parser.add_argument("--max_pixels", type=int, default=SERVE_MAX_PIXELS,
                        help=f"largest image, width x height [default {SERVE_MAX_PIXELS}]")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime's threads [default 0: its choice]")
    parser.add_argument("--access_log", action="store_true", help="log every request on stderr")
    args = parser.parse_args()
    check_model_options(args)
    check_count("max_batch", args.max_batch, MOST_BATCH)
    if not 0 <= args.max_wait_ms <= 1000:
        raise InputError(f"--max_wait_ms must be between 0 and 1000, got {args.max_wait_ms}")
    if args.max_body < 1 or args.max_pixels < 1 or not 0 <= args.port <= 65535 or args.threads < 0:
        raise InputError("--max_body and --max_pixels must be positive, --port 0 to 65535, --threads 0 or more")
    stop = threading.Event()  # SIGTERM and Ctrl-C drain the server (not cli.stop_on_signals' exception)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    reader = open_reader(args, batch_size=args.max_batch, threads=args.threads)
    reader.read_inputs(np.zeros((1, reader.hp.image_width, reader.hp.image_height), np.uint8))  # warm up
    batcher = Batcher(reader, args.max_batch, args.max_wait_ms)
    try:
        server = Server((args.host, args.port), reader, batcher, args.max_body, args.max_pixels, args.min_confidence,
                        args.access_log)
    except OSError as error:
        batcher.stop()
        raise InputError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    host, port = server.server_address[:2]
    print(f"Serving {reader.name} on http://{host}:{port} (POST /read, GET /health; "
          f"batches of up to {args.max_batch}, waiting up to {args.max_wait_ms:g} ms)", flush=True)
    serve(server, stop)
    print(f"Stopped after reading {batcher.images} images in {batcher.batches} batches", file=sys.stderr, flush=True)


if __name__ == "__main__":
    run_main(main)
