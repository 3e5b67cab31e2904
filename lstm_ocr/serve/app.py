"""An HTTP service that reads captchas (FastAPI on uvicorn), batching concurrent requests into one forward pass.

    python lstm_ocr_serve.py --prefix general --port 8000
    python lstm_ocr_serve.py --onnx model.onnx --port 8000 --collect collected/   # ONNX Runtime, no MXNet

    curl --data-binary @sample.png http://127.0.0.1:8000/read
    curl -F file=@a.png -F file=@b.png 'http://127.0.0.1:8000/read?allowed=0123456789&length=4'
    curl -H 'Content-Type: application/json' -d '{"image": "iVBORw0..."}' http://127.0.0.1:8000/read
    {"readings": [{"id": "5f0c...", "name": "a.png", "text": "0089", "confidence": 0.9991, "chars": [...],
                   "untrained_length": false}, ...]}
    curl -H 'Content-Type: application/json' -d '{"id": "5f0c...", "correct": true}' http://127.0.0.1:8000/feedback

`POST /read` takes an image as the body, multipart files (other form fields are ignored), or JSON
{"image": BASE64} / {"images": [...]}, and answers {"readings": [...]} for all of them: one entry per
image, a reading or its own "error". Options (query, form fields or JSON keys): min_confidence, allowed,
length. `POST /feedback` files the image of a reading into the --collect folder under its right text.
`GET /health` names the model and its alphabet; the schema is at /docs and /openapi.json.

Limits: --max_body bytes per request on every route (413), --max_pixels per image (read from its header
before it is decoded), a --request_seconds deadline for each whole request and for a client to read its
answers, --max_connections connections,
at most 4 decodes per core at once (16 in all). SIGTERM or Ctrl-C stops accepting, finishes the requests in
flight (at most --drain_seconds) and exits 0.
"""

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from lstm_ocr.cli import ArgumentParser, InputError, check_count, run_main
from lstm_ocr.hyperparameters import (
    MAX_UNLABELLED_IMAGES,
    SERVE_IDLE_SECONDS,
    SERVE_MAX_BODY_BYTES,
    SERVE_MAX_CONNECTIONS,
    SERVE_MAX_FILES,
    SERVE_MAX_PIXELS,
    SERVE_REQUEST_SECONDS,
)
from lstm_ocr.reader import DEFAULT_PREFIX, Reader, Reading, add_model_options, check_model_options, open_reader
from lstm_ocr.serve.batcher import Batcher
from lstm_ocr.serve.feedback import MAX_TEXT, UNLABELLED, FeedbackError, FeedbackStore
from lstm_ocr.serve.guard import CLOSED_HERE, GuardedH11Protocol, log_refusal, peer

MOST_BATCH = 1024
# Images decoded at once, each at most --max_pixels: memory stays bounded. Pillow and OpenCV release the GIL,
# and more threads than cores keep batches full on a busy machine (2 per core: half the throughput of 4).
DECODES = min(16, 4 * (os.cpu_count() or 1))
log = logging.getLogger("lstm_ocr_serve")
HINT = ("send the image file's bytes (curl --data-binary @FILE, not -d, which mangles binary files), multipart "
        "files (curl -F file=@FILE), or JSON {\"image\": BASE64} with Content-Type: application/json")


# The schema (OpenAPI): what /read and /feedback answer.
class Char(BaseModel):
    char: str
    probability: float


class ReadingOut(BaseModel):
    """One image's reading, or its `error` (then only `name` beside it)."""

    id: str | None = Field(None, description="give it to POST /feedback to say whether the reading was right")
    name: str | None = Field(None, description="the file's name (multipart) or `image N` (JSON); absent for a raw body")
    text: str | None = None
    confidence: float | None = None
    chars: list[Char] | None = None
    untrained_length: bool | None = Field(None, description="the text's length lies outside the model's training")
    rejected: bool | None = Field(None, description="with min_confidence: the confidence is below it")
    error: str | None = Field(None, description="why this image could not be read")


class ReadAnswer(BaseModel):
    """Every answer of /read (and every error of the service) has this shape."""

    readings: list[ReadingOut] = []
    error: str | None = Field(None, description="why the request (not one image) failed")


class ReadJson(BaseModel):
    image: str | None = Field(None, description="one image, base64 (a data: URL too)")
    images: list[str] | None = Field(None, description="several images, base64")
    min_confidence: StrictFloat | StrictInt | None = None  # strict: `true` is no number
    allowed: StrictStr | None = None
    length: StrictStr | StrictInt | None = None


class Feedback(BaseModel):
    id: str = Field(max_length=64)
    correct: StrictBool = Field(description="a JSON boolean, true or false (\"yes\" or 1 is refused: 422)")
    text: str | None = Field(None, max_length=MAX_TEXT, description="the right text, when the reading was wrong")


class FeedbackAnswer(BaseModel):
    id: str
    filed: str | None = Field(None, description="the file written into the --collect folder, if any")


class Health(BaseModel):
    status: str
    model: str
    chars: str
    image_width: int
    image_height: int
    images_read: int
    batches: int
    collecting: bool


class Refused(Exception):
    """A request answered with an error status and {"error": ..., "readings": [...]}."""

    def __init__(self, status: int, message: str, readings: list[dict] | None = None):
        super().__init__(message)
        self.status, self.readings = status, readings or []


@dataclass
class Settings:
    max_body: int = SERVE_MAX_BODY_BYTES
    max_pixels: int = SERVE_MAX_PIXELS
    max_files: int = SERVE_MAX_FILES
    min_confidence: float | None = None
    allowed: str | None = None
    length: str | None = None


@dataclass
class Upload:
    name: str | None
    data: bytes | None
    error: str | None = None


def error_answer(status: int, message: str, readings: list[dict] | None = None) -> JSONResponse:
    return JSONResponse({"readings": readings or [], "error": message}, status)


def refusal(request: Request, status: int, message: str, readings: list[dict] | None = None) -> JSONResponse:
    """The error answer, and its one log line (what was refused, from whom, why)."""
    log_refusal(status, f"{request.method} {request.url.path}", request.client, message)
    return error_answer(status, message, readings)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it is known to pass `limit` bytes."""
    length = request.headers.get("content-length")
    if length is not None and int(length) > limit:  # h11 has checked it is one number
        raise Refused(413, f"the body is {length} bytes, over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def replay(body: bytes):
    """An ASGI receive() that hands over a body already read (for Starlette's form parser)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def from_base64(text: object, name: str) -> Upload:
    if not isinstance(text, str):
        return Upload(name, None, "not a base64 string")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return Upload(name, base64.b64decode("".join(text.split()), validate=True))
    except (binascii.Error, ValueError):
        return Upload(name, None, "not valid base64")


async def uploads(request: Request, body: bytes, settings: Settings) -> tuple[list[Upload], dict, str | None]:
    """The request's images, the options its body carries, and a hint for a body that is no image."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/"):
        try:
            form = await Request(request.scope, replay(body)).form(max_files=settings.max_files,
                                                                   max_fields=1000)
        except HTTPException as error:
            raise Refused(400, f"a multipart body that cannot be parsed: {error.detail}") from None
        files, options = [], {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append(Upload(value.filename or key, await value.read()))
            elif key in ("min_confidence", "allowed", "length"):
                options[key] = value
        if not files:
            raise Refused(400, "the multipart body holds no file (send images as file fields: curl -F file=@FILE)")
        return files, options, None
    if content_type.startswith("application/json") or body.lstrip()[:1] == b"{":
        try:
            parsed = ReadJson.model_validate(json.loads(body))
        except (ValueError, RecursionError) as error:
            reason = " ".join(str(error).split())[:300]
            raise Refused(400, f"a JSON body must be {{\"image\": BASE64}} or {{\"images\": [BASE64, ...]}}: "
                               f"{reason}") from None
        texts = ([parsed.image] if parsed.image is not None else []) + (parsed.images or [])
        if not texts:
            raise Refused(400, "the JSON body has no \"image\" or \"images\"")
        if len(texts) > settings.max_files:
            raise Refused(413, f"{len(texts)} images in one request, over the limit of {settings.max_files}")
        options = parsed.model_dump(include={"min_confidence", "allowed", "length"}, exclude_none=True)
        names = [None] if parsed.image is not None and parsed.images is None else \
            [f"image {k + 1}" for k in range(len(texts))]
        return [from_base64(text, name) for text, name in zip(texts, names, strict=True)], options, None
    hint = HINT
    if content_type.startswith("application/x-www-form-urlencoded"):
        hint = "this body came as a form (curl -d); " + HINT
    elif re.fullmatch(rb"[A-Za-z0-9+/=\s]{16,}", body[:4096]):
        hint = "this body looks like text; " + HINT
    return [Upload(None, body)], {}, hint


def options_of(request: Request, body_options: dict, settings: Settings, reader: Reader):
    """min_confidence and the constraints, from the body, else the query, else the command line."""
    def option(name: str):
        return body_options.get(name, request.query_params.get(name, getattr(settings, name)))

    minimum = option("min_confidence")
    try:
        minimum = None if minimum in (None, "") else float(minimum)
        if minimum is not None and not 0 <= minimum <= 1:
            raise ValueError
    except ValueError:
        raise Refused(400, f"min_confidence must be a number from 0 to 1, got {minimum!r}") from None
    try:
        constraints = reader.constraints(option("allowed") or None, option("length") or None)
    except InputError as error:
        raise Refused(400, str(error).replace("--", "")) from None
    return minimum, constraints


async def read_unless_gone(request: Request, batcher: Batcher, inputs: np.ndarray, constraints) -> list[Reading]:
    """The batcher's readings of `inputs`; a client that leaves while they wait takes its images out of
    the queue (nothing is computed for nobody). An error of the model is a 500 (the batcher logs it)."""
    reading = asyncio.ensure_future(batcher.read(inputs, constraints))
    gone = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({reading, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not reading.done():
            reading.cancel()  # its job's future is cancelled: the batcher skips it
    if not reading.done() or reading.cancelled():
        request.scope[CLOSED_HERE] = True  # logged here, once
        log.warning("%s left before its answer: its %d images were taken out of the queue", peer(request.client),
                    len(inputs))
        raise ClientDisconnect()
    try:
        return reading.result()
    except Exception as error:
        raise Refused(500, f"the model failed on this request's batch ({type(error).__name__}: "
                           f"{' '.join(str(error).split())[:200]})") from None


async def disconnected(request: Request) -> None:
    """Returns once the client has closed the connection (its body has been read whole already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class JsonErrors:
    """ASGI middleware: an error nothing else answered is a JSON 500 and one log line, never a
    traceback (uvicorn's answer is text and logs 40 lines per request)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def sending(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            log.error("%s %s failed: %s: %s", scope.get("method"), scope.get("path"), type(error).__name__,
                      " ".join(str(error).split())[:300])
            if not started:
                await error_answer(500, f"the server failed on this request ({type(error).__name__})")(
                    scope, receive, send)


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, whose refused preflight (text) is answered in the service's JSON shape."""

    def preflight_response(self, request_headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return JSONResponse({"readings": [], "error": f"CORS preflight refused: {bytes(response.body).decode()}"},
                            response.status_code, headers=headers)


def reading_dict(reading: Reading, minimum: float | None) -> dict:
    found = reading.to_dict()
    if minimum is not None and reading.error is None:
        found["rejected"] = reading.confidence < minimum
    return found


def create_app(reader: Reader, batcher: Batcher, settings: Settings, store: FeedbackStore | None = None,
               cors_origins: list[str] | None = None) -> FastAPI:
    """The service's ASGI application; the batcher runs in its lifespan."""
    decodes = ThreadPoolExecutor(DECODES, thread_name_prefix="decode")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run())
        yield
        batcher.stop()
        await task
        decodes.shutdown(wait=False)
        if store is not None:  # the images still held without feedback, written off the event loop
            await asyncio.to_thread(store.close)

    # /docs and /redoc load Swagger UI's and ReDoc's files from this service (fastapi-offline ships them)
    app = FastAPIOffline(title="lstm-ocr", summary="Reads captchas with an LSTM + CTC network",
                         version="1.0.0", lifespan=lifespan)
    app.add_middleware(JsonErrors)
    if cors_origins:
        app.add_middleware(JsonCORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"])

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        return refusal(request, error.status, str(error), error.readings)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = error.detail if error.status_code != 404 else \
            f"no such path {request.url.path}; POST /read, POST /feedback, GET /health, GET /docs"
        answer = refusal(request, error.status_code, str(message))
        answer.headers.update(error.headers or {})
        return answer

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        if any(tuple(e["loc"]) == ("body", "correct") for e in error.errors()):  # never read "yes" as true
            return refusal(request, 422, f"correct must be a JSON boolean, true or false ({reasons})"[:500])
        return refusal(request, 400, reasons[:500])

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, error: ClientDisconnect) -> JSONResponse:
        if not request.scope.get(CLOSED_HERE):
            log.warning("%s closed the connection before its request was whole", peer(request.client))
        return error_answer(400, "the request's body ended early")

    def decode(upload: Upload) -> np.ndarray:
        return reader.network_input(upload.data, upload.name or "the image", settings.max_pixels)

    # The options are read by options_of (body, query, command line), not by FastAPI's parameter solving:
    # that costs 0.5 ms of the event loop per request; they are documented here instead.
    read_body_doc = {"parameters": [
        {"name": "min_confidence", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 1},
         "description": "add `rejected` to readings whose confidence is below it"},
        {"name": "allowed", "in": "query", "schema": {"type": "string"},
         "description": "the characters a reading may use (of the model's alphabet)"},
        {"name": "length", "in": "query", "schema": {"type": "string"},
         "description": "N or MIN-MAX: the most probable text of this length"}],
        "requestBody": {"required": True, "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "min_confidence": {"type": "number"}, "allowed": {"type": "string"}, "length": {"type": "string"}}}},
        "application/json": {"schema": ReadJson.model_json_schema()}}}}

    @app.post("/read", response_model=ReadAnswer, response_model_exclude_none=True, openapi_extra=read_body_doc,
              responses={400: {"model": ReadAnswer}, 413: {"model": ReadAnswer}})
    async def read(request: Request) -> JSONResponse:
        """Read one image (the body), multipart files, or JSON base64 images. Options: `min_confidence`
        (adds `rejected`), `allowed` (the characters a text may use), `length` (N or MIN-MAX)."""
        with batcher.receiving():
            body = await read_body(request, settings.max_body)
            files, body_options, hint = await uploads(request, body, settings)
            minimum, constraints = options_of(request, body_options, settings, reader)
            inputs: list[np.ndarray | None] = []
            for upload in files:
                if upload.error is None:
                    try:
                        inputs.append(await asyncio.get_running_loop().run_in_executor(decodes, decode, upload))
                        continue
                    except InputError as error:
                        upload.error = " ".join(str(error).split())
                    except Exception as error:  # any other failure of one file is that file's error
                        log.error("decoding %s failed: %s: %s", upload.name or "an image", type(error).__name__,
                                  " ".join(str(error).split())[:300])
                        upload.error = f"cannot be read ({type(error).__name__})"
                inputs.append(None)
        good = [k for k, found in enumerate(inputs) if found is not None]
        readings = await read_unless_gone(request, batcher, np.stack([inputs[k] for k in good]), constraints) \
            if good else []
        found: list[dict] = [{"error": upload.error} for upload in files]
        for k, reading in zip(good, readings, strict=True):
            found[k] = reading_dict(reading, minimum)
            if reading.error is None:
                found[k] = {"id": store.keep(files[k].data, reading.text) if store else os.urandom(16).hex()} | found[k]
        found = [entry if upload.name is None else {"name": upload.name} | entry
                 for upload, entry in zip(files, found, strict=True)]
        if not good:
            message = f"no image in the request could be read: {files[0].error}"
            raise Refused(400, message + (f"; hint: {hint}" if hint else ""), found)
        return JSONResponse({"readings": found})

    @app.post("/feedback", response_model=FeedbackAnswer, responses={404: {"model": ReadAnswer}})
    async def feedback(answer: Feedback) -> FeedbackAnswer:
        """Say whether a reading was right (`correct`), or give the right `text`: its image is filed into
        the --collect folder as `NNNNNN.png` with its text in the folder's labels.csv, which
        `lstm_ocr_train.py --train_dir` reads."""
        if store is None:
            raise Refused(404, "feedback is off: start the service with --collect DIR to file confirmed readings")
        try:
            # in a thread: the write waits for the folder's lock and the disk (fsync), never the event loop
            filed = await asyncio.to_thread(store.file, answer.id, answer.correct, answer.text)
            return FeedbackAnswer(id=answer.id, filed=filed)
        except FeedbackError as error:
            raise Refused(error.status, str(error)) from None

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """The model, its alphabet and input size, and how much it has read."""
        hp = reader.hp
        return Health(status="ok", model=reader.name, chars=hp.chars, image_width=hp.image_width,
                      image_height=hp.image_height, images_read=batcher.images, batches=batcher.batches,
                      collecting=store is not None)

    return app


class Server(uvicorn.Server):
    """uvicorn's server that says where it listens once it does, and exits 0 after SIGTERM or Ctrl-C
    (uvicorn re-raises the signal, which would end the process with its status)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self.handle_exit)
        yield

    drain_seconds = 10.0

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's draining, which closes idle connections and waits for the requests in flight; those
        whose bytes are still arriving after --drain_seconds are closed (uvicorn would cancel their tasks,
        a traceback each, a few seconds later)."""
        def cut() -> None:
            for connection in list(self.server_state.connections):
                if isinstance(connection, GuardedH11Protocol):
                    connection.stop_receiving()

        handle = asyncio.get_running_loop().call_later(self.drain_seconds, cut)
        try:
            await super().shutdown(sockets)
        finally:
            handle.cancel()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = sockets[0].getsockname()[:2]
            state = self.config.app.state
            print(f"Serving {state.model} on http://{host}:{port} (POST /read, POST /feedback, GET /health, "
                  f"GET /docs); {'; '.join(state.options)}", flush=True)


def listen(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_server((host, port), backlog=1024)
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def collect_hint(args: argparse.Namespace, reader: Reader) -> str:
    """How to learn from the --collect folder: fine-tune the served model, not a shipped one."""
    start = (f"{args.prefix or DEFAULT_PREFIX}:{reader.model.epoch}" if args.onnx is None else
             f"PREFIX:EPOCH (the checkpoint {args.onnx} was exported from: an ONNX model cannot be fine-tuned)")
    hint = (f"Filing confirmed readings into {args.collect}; to learn from them, continue from the served model: "
            f"python lstm_ocr_train.py --train_dir {args.collect} --finetune {start} --prefix models/next")
    if args.collect_unlabelled:
        unlabelled = os.path.join(args.collect, UNLABELLED)
        hint += (f"\nKeeping images without feedback in {unlabelled}; to self-train on them too: python "
                 f"lstm_ocr_train.py --unlabelled_dir {unlabelled} --train_dir {args.collect} --finetune {start} "
                 "--prefix models/next (without --train_dir while no reading is confirmed)")
    return hint


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    add_model_options(parser, "serve this ONNX model (lstm.py --to onnx) with ONNX Runtime; MXNet is not needed",
                      'add "rejected": true to readings whose confidence is below X (a request may give its own)')
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
    parser.add_argument("--max_connections", type=int, default=SERVE_MAX_CONNECTIONS,
                        help=f"open connections at most [default {SERVE_MAX_CONNECTIONS}]")
    parser.add_argument("--request_seconds", type=float, default=SERVE_REQUEST_SECONDS,
                        help=f"deadline for a whole request, headers and body [default {SERVE_REQUEST_SECONDS}]")
    parser.add_argument("--drain_seconds", type=float, default=10.0,
                        help="after SIGTERM, how long requests in flight may take to finish [default 10]")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime's threads [default 0: its choice]")
    parser.add_argument("--cors_origin", action="append", default=[], metavar="ORIGIN",
                        help="let web pages of this origin call the service (repeat for more; * for any)")
    parser.add_argument("--collect", metavar="DIR", help="keep each reading's image for a while, and file those "
                                                          "POST /feedback confirms into DIR [default: off]")
    parser.add_argument("--collect_seconds", type=float, default=600,
                        help="how long an image waits for its feedback [default 600]")
    parser.add_argument("--collect_count", type=int, default=10000, help="images kept at most [default 10000]")
    parser.add_argument("--collect_mb", type=float, default=1000, help="size of DIR at most, MB [default 1000]")
    parser.add_argument("--collect_unlabelled", type=int, default=0, metavar="N",
                        help="also keep up to N images no feedback came for (expired, pushed out, or held at "
                             "shutdown) in DIR/unlabelled/, for lstm_ocr_train.py --unlabelled_dir; they take at "
                             "most half of --collect_mb, so confirmed readings always have the other half "
                             "[default 0: off]")
    parser.add_argument("--access_log", action="store_true", help="log every request on stderr")
    args = parser.parse_args()
    check_model_options(args)
    check_count("max_batch", args.max_batch, MOST_BATCH)
    check_count("max_connections", args.max_connections, 10000)
    check_count("collect_count", args.collect_count, 1_000_000)
    if not 0 <= args.collect_unlabelled <= MAX_UNLABELLED_IMAGES:
        raise InputError(f"--collect_unlabelled must be between 0 (off) and {MAX_UNLABELLED_IMAGES}, got "
                         f"{args.collect_unlabelled}")
    if args.collect_unlabelled and not args.collect:
        raise InputError("--collect_unlabelled needs --collect DIR: the images go into DIR/unlabelled/")
    if not 0 <= args.max_wait_ms <= 1000:
        raise InputError(f"--max_wait_ms must be between 0 and 1000, got {args.max_wait_ms}")
    if args.max_body < 1 or args.max_pixels < 1 or not 0 <= args.port <= 65535 or args.threads < 0:
        raise InputError("--max_body and --max_pixels must be positive, --port 0 to 65535, --threads 0 or more")
    for name in ("request_seconds", "drain_seconds", "collect_seconds", "collect_mb"):
        if not 0 < getattr(args, name) <= 1e6:
            raise InputError(f"--{name} must be a positive number, got {getattr(args, name)}")
    reader = open_reader(args, batch_size=args.max_batch, threads=args.threads, spin=False)
    settings = Settings(args.max_body, args.max_pixels, SERVE_MAX_FILES, args.min_confidence, args.allowed,
                        args.length)
    reader.constraints(args.allowed, args.length)  # checked against the model's alphabet
    reader.read_inputs(np.zeros((1, reader.hp.image_width, reader.hp.image_height), np.uint8))  # warm up
    store = None
    if args.collect:
        store = FeedbackStore(args.collect, reader.hp.chars, args.collect_seconds, args.collect_count,
                              min(256 << 20, args.collect_count * args.max_body), int(args.collect_mb * 1e6),
                              fold=reader.hp.fold, unlabelled_count=args.collect_unlabelled)
        print(collect_hint(args, reader), file=sys.stderr, flush=True)
    sock = listen(args.host, args.port)  # after the model and the folder: their errors never depend on the port
    batcher = Batcher(reader, args.max_batch, args.max_wait_ms)
    app = create_app(reader, batcher, settings, store, args.cors_origin)
    app.state.model = reader.name
    app.state.options = (f"--collect {args.collect}" if args.collect else "--collect off: no feedback filed",
                         *([f"--collect_unlabelled {args.collect_unlabelled}"] if args.collect_unlabelled else []),
                         "--access_log on" if args.access_log else "--access_log off: refusals only")
    GuardedH11Protocol.request_seconds = args.request_seconds
    GuardedH11Protocol.max_connections = args.max_connections
    GuardedH11Protocol.max_body = args.max_body
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.INFO)
    # loop "auto" is uvloop (pinned in the requirements; asyncio where it does not run): 20 % less of the event
    # loop's time per request (docs/service.md)
    config = uvicorn.Config(app, http=GuardedH11Protocol, lifespan="on", loop="auto",
                            timeout_keep_alive=SERVE_IDLE_SECONDS, proxy_headers=False,
                            timeout_graceful_shutdown=args.drain_seconds + 5, access_log=args.access_log,
                            log_level="info" if args.access_log else "warning", server_header=False)
    server = Server(config)
    server.drain_seconds = args.drain_seconds
    server.run(sockets=[sock])
    print(f"Stopped after reading {batcher.images} images in {batcher.batches} batches", file=sys.stderr, flush=True)


def command() -> None:
    """`lstm-ocr-serve` and the root script: main() with one `error:` line for a refusal (run_main)."""
    run_main(main)


if __name__ == "__main__":
    run_main(main)
