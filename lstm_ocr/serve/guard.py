"""Uvicorn's HTTP/1.1 protocol (h11) with the limits a service open to hostile clients needs.

- A deadline for each whole request, headers and body: a connection that has not sent a complete
  request within `request_seconds` of opening (or of its last answer) is answered 408 and closed,
  however slowly it trickles bytes (uvicorn alone only times out idle kept-alive connections).
- At most `max_connections` connections: a new one past that closes the connection that has spent
  the longest receiving a request or idle, so slow clients cannot hold every slot; when all are busy
  with requests being answered, the newcomer gets 503.
- One body limit for every route (`max_body`): a Content-Length over it is answered 413 from the
  request's head, and a body (chunked too) is counted as h11 hands it over and refused the moment it
  passes the limit, before the application buffers it. A request with both Content-Length and
  Transfer-Encoding is answered 400 and closed (RFC 9112 section 6.1: it may be smuggling).
- A deadline on writing answers: a connection whose answers stay unread (the transport's buffer over
  its high-water mark, the client reading nothing) for `request_seconds` is dropped, and a connection
  blocked in writing is evicted like an idle one when the server is full (pipelining clients that
  never read cannot hold the slots).
- A connection closed here gets its answer, a FIN, and 1 s in which what the client still sends is
  dropped (a close with unread bytes would reset the connection and could destroy the answer).
- Client faults are one log line: a malformed request is uvicorn's "Invalid HTTP request" warning, and
  its 400 has the service's JSON shape.

h11 already answers pipelined requests in order, refuses conflicting or non-numeric Content-Length
headers (400), and never reads past a request's body.
"""

import asyncio
import json
import logging
import socket
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from lstm_ocr.hyperparameters import SERVE_MAX_BODY_BYTES

log = logging.getLogger("lstm_ocr_serve")
LINGER_SECONDS = 1.0
SEND_BUFFER_BYTES = 16 * 1024  # the kernel's per connection (it books twice this), and the transport's high water
CLOSED_HERE = "lstm_ocr.closed_by_server"  # a scope key: this protocol closed the request's connection


def peer(client: tuple | None) -> str:
    """`host:port` of a connection's client, for a log line."""
    return f"{client[0]}:{client[1]}" if client else "a client"


def log_refusal(status: int, request_line: str, client: tuple | None, message: str) -> None:
    """The one log line of a refused request, here or in the application: status, what, from whom, why."""
    log.warning("%d %s from %s: %s", status, request_line, peer(client), message)


def raw_answer(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error body, that closes the connection."""
    body = json.dumps({"error": message, "readings": []}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a whole-request deadline and a bounded number of connections."""

    request_seconds = 10.0  # set by lstm_ocr_serve.py from --request_seconds
    max_connections = 256
    max_body = SERVE_MAX_BODY_BYTES  # set from --max_body

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._eof = False  # the client has shut its side of the connection
        self._lingering = False  # answered and closing: what the client still sends is dropped
        self.waiting_since: float | None = None  # when it began waiting for a request; None: one is in hand
        self.writing_since: float | None = None  # when its answers began to wait for the client to read them
        self._write_deadline: asyncio.TimerHandle | None = None
        self._body_bytes = 0  # of the request being received
        self._request_line = "a request"  # its method and path, for the log line of a refusal
        self._lost = False
        self._h11_next_event = self.conn.next_event
        self.conn.next_event = self._next_event  # every event h11 parses passes the limits first

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # h11 writes an answer's head and body apart: without this, Nagle's algorithm holds the body
            # until the client's delayed ACK (40 ms). asyncio sets it only on sockets made with IPPROTO_TCP.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sock is not None:
            # The kernel's send buffer would grow to megabytes for a client that reads nothing, hiding it
            # from the write deadline; answers are a few kilobytes, so a bounded one costs no speed.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES)  # then pause_writing: the deadline starts
        self._arm()
        if len(self.connections) > self.max_connections and not self._make_room():
            log.warning("refused a connection from %s: %d connections, all busy", self._peer(), self.max_connections)
            self._close_with(503, "Service Unavailable", "too many connections; retry later")

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a complete request, or for its client to read
        its answers; False if none waits."""
        waiting = [other for other in self.connections if isinstance(other, GuardedH11Protocol) and other is not self
                   and (other.waiting_since is not None or other.writing_since is not None)]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda other: min(t for t in (other.waiting_since, other.writing_since)
                                                     if t is not None))
        if oldest.writing_since is not None:
            log.warning("closed a connection from %s to make room: its answers unread for %.1f s", oldest._peer(),
                        self.loop.time() - oldest.writing_since)
            oldest._drop()
        else:
            log.warning("closed a connection from %s to make room: no complete request in %.1f s", oldest._peer(),
                        self.loop.time() - oldest.waiting_since)
            oldest._close_with(503, "Service Unavailable", "the server is full and this connection sent no request")
        return True

    def _next_event(self) -> Any:
        """h11's next event, unless it breaks a limit: then the connection is answered and closed, and
        h11.PAUSED stops uvicorn from handling anything more of it."""
        event = self._h11_next_event()
        if isinstance(event, h11.Request):
            self._body_bytes = 0
            path = event.target.split(b"?", 1)[0]
            self._request_line = f"{event.method.decode('ascii', 'replace')} {path.decode('ascii', 'replace')}"
            names = [name.lower() for name, _ in event.headers]
            if b"transfer-encoding" in names and b"content-length" in names:
                message = "a request with both Content-Length and Transfer-Encoding is refused (RFC 9112 section 6.1)"
                log_refusal(400, self._request_line, self.client, message)
                self._close_with(400, "Bad Request", message)
                return h11.PAUSED
            length = next((value for name, value in event.headers if name.lower() == b"content-length"), None)
            if length is not None and int(length) > self.max_body:  # h11 has checked it is one number
                return self._too_large(f"the body is {int(length)} bytes, over the limit of {self.max_body}")
        elif isinstance(event, h11.Data):
            self._body_bytes += len(event.data)
            if self._body_bytes > self.max_body:
                return self._too_large(f"the body is over the limit of {self.max_body} bytes")
        return event

    def _too_large(self, message: str) -> Any:
        if self.cycle is not None and self.cycle.response_complete and self.conn.their_state is h11.SEND_BODY:
            self._linger()  # this request was answered (and logged) already (404, 405): one answer each, then the close
        else:
            log_refusal(413, self._request_line, self.client, message)
            self._close_with(413, "Content Too Large", message)
        return h11.PAUSED

    def shutdown(self) -> None:
        """uvicorn's graceful close; a connection answered and closing here is simply closed (h11 is in the
        middle of a request it was never given)."""
        if self._lingering:
            self.transport.close()
        else:
            super().shutdown()

    def pause_writing(self) -> None:
        """The client reads our answers slower than we write them: it has `request_seconds` to catch up."""
        super().pause_writing()
        if self.writing_since is None:
            self.writing_since = self.loop.time()
            self._write_deadline = self.loop.call_later(self.request_seconds, self._write_expired)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._writes_flow()

    def _writes_flow(self) -> None:
        self.writing_since = None
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _write_expired(self) -> None:
        self._write_deadline = None
        log.warning("closed a connection from %s: it read no answer within %g s", self._peer(), self.request_seconds)
        self._drop()

    def _drop(self) -> None:
        """Close at once, what is unsent discarded: the client reads nothing, so nothing more can reach it."""
        self._writes_flow()
        self.waiting_since = None
        if self.cycle is not None:
            self.cycle.scope[CLOSED_HERE] = True
        self.transport.abort()

    def _peer(self) -> str:
        return peer(self.client)

    def _arm(self) -> None:
        self._disarm()
        self.waiting_since = self.loop.time()
        self._deadline = self.loop.call_later(self.request_seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.waiting_since = None

    def _request_in_hand(self) -> bool:
        return self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        super().data_received(data)
        if self._deadline is not None and self._request_in_hand():
            self._disarm()

    def eof_received(self) -> bool:
        """A client that has sent its requests and shut its side (`nc -N`, pipelining scripts) still gets
        its answers, then the connection closes; one that ends in the middle of a request gets 400."""
        self._eof = True
        if self._lingering:
            return False
        if self._request_in_hand():
            return True  # keep the connection open to write the answers
        self._client_ended()
        return False

    def _client_ended(self) -> None:
        if self.conn.their_state is h11.SEND_BODY or self.conn.trailing_data[0]:
            log.warning("%s ended its connection in the middle of a request", self._peer())
            self._close_with(400, "Bad Request", "the request ended before its end (short body or headers)")
        else:
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request already received
        if not self.transport.is_closing() and not self._request_in_hand():
            if self._eof:
                self._client_ended()
            else:
                self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._disarm()
        self._writes_flow()
        super().connection_lost(exc)

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._request_in_hand():
            return
        if self.conn.their_state is not h11.IDLE or self.conn.trailing_data[0]:  # a request was begun
            log.warning("closed a connection from %s: no complete request within %g s", self._peer(),
                        self.request_seconds)
        self._close_with(408, "Request Timeout", f"no complete request within {self.request_seconds:g} s")

    def stop_receiving(self) -> None:
        """At the end of draining: close the connection unless its request has been received whole."""
        if not self.transport.is_closing() and not self._request_in_hand():
            if self.conn.their_state is not h11.IDLE or self.conn.trailing_data[0]:
                log.warning("closed a connection from %s: its request was still arriving when the server stopped",
                            self._peer())
            self._close_with(503, "Service Unavailable", "the server is stopping")

    def send_400_response(self, msg: str) -> None:
        """A malformed request (h11 refused it): 400 in the service's JSON shape, not uvicorn's plain text."""
        self._close_with(400, "Bad Request", "not a valid HTTP/1.1 request (its request line, a header, or a "
                                             "Content-Length that is not one decimal number)")

    def _close_with(self, status: int, reason: str, message: str) -> None:
        """Answer `status` unless an answer is being written, and close the connection."""
        self.waiting_since = None
        if self.cycle is not None:
            self.cycle.scope[CLOSED_HERE] = True  # logged here: the app need not log the disconnect again
        if self.cycle is None or not self.cycle.response_started or self.cycle.response_complete:
            if self.cycle is not None:
                self.cycle.disconnected = True  # the app's own answer, if it comes, is dropped
            self.transport.write(raw_answer(status, reason, message))
            self._linger()
        else:
            self.transport.close()

    def _linger(self) -> None:
        """Close softly: send the answer and a FIN, drop what the client still sends for LINGER_SECONDS,
        then close. Closing at once with unread bytes would send a reset, which can destroy the answer."""
        self._lingering = True
        self._disarm()
        if self.cycle is not None:
            self.cycle.message_event.set()  # a request waiting for its body learns it is gone
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self._end_linger)

    def _end_linger(self) -> None:
        """Close; a client that does not even read the answer is dropped at the write deadline."""
        self.transport.close()
        self.loop.call_later(self.request_seconds, lambda: None if self._lost else self.transport.abort())
