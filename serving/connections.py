"""Deadlines on every connection: idle, request head and request body, each fixed when its phase begins.

uvicorn closes a keep-alive connection only when no byte arrives within ``timeout_keep_alive``
after a response; it has no deadline for a connection that never sends a request, nor for
one that sends its head or body a byte at a time. So a client can hold a connection (and a
file descriptor) for ever. This protocol is uvicorn's own httptools protocol with one timer
per connection that is set when a phase begins and never pushed back by the bytes that arrive:

* idle (just connected, or between keep-alive requests): ``keep_alive`` seconds to start a request;
* head: ``header`` seconds from its first byte to the end of its headers;
* body: ``body`` seconds from the end of the headers to the last byte of the body;
* none while the app works on a complete request.

A request that misses its head or body deadline is answered ``408`` in the API's error form and
the connection closed; an idle connection is closed silently (a client may be about to reuse it).

Why a wrapper rather than another server: hypercorn and granian are not in the environment and
would change the serving stack for one feature; a proxy (nginx, Envoy) is the right answer in a
cluster (KServe's Istio sidecar has its own timeouts) but not for ``twinflow serve`` on a port of
its own. This keeps uvicorn's C parser and event loop and adds three timer operations a request.
It leans on uvicorn's parser callbacks (``on_message_begin`` …), so uvicorn is pinned and
``tests/test_serving_connections.py`` checks the deadlines over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from twinflow.core.errors import ConfigError

log = logging.getLogger("twinflow.serving")

IDLE, HEAD, BODY, BUSY = "idle", "head", "body", "busy"
TIMED_OUT = "twinflow.timed_out"  # set in the scope of a request whose body missed its deadline


@dataclass(frozen=True)
class ConnectionTimeouts:
    keep_alive: float  # idle: before the first request, and between requests
    header: float  # from a request's first byte to the end of its headers
    body: float  # from the end of the headers to the end of the body


def _timeout_response(message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a per-phase read deadline (see the module's docstring)."""

    timeouts: ClassVar[ConnectionTimeouts]
    on_timeout: ClassVar[Callable[[str], None]]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = IDLE
        super().connection_made(transport)
        self._arm(IDLE, self.timeouts.keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm(IDLE)
        super().connection_lost(exc)

    def _arm(self, phase: str, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self, phase: str) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase

    def data_received(self, data: bytes) -> None:
        if self._phase == IDLE:  # the first byte of a request: the head's deadline starts now, once
            self._arm(HEAD, self.timeouts.header)
        super().data_received(data)

    # -- httptools parser callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != HEAD:  # a pipelined request, arriving while the previous one is worked on
            self._arm(HEAD, self.timeouts.header)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(BODY, self.timeouts.body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete and not self.pipeline:
            self._arm(IDLE, self.timeouts.keep_alive)  # answered early (a 413), the rest of its body now read
        else:
            self._disarm(BUSY)

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if self._phase == BUSY and not pipelined and not self.transport.is_closing():
            self._arm(IDLE, self.timeouts.keep_alive)
        # HEAD or BODY: the next request, or the rest of this one's body, is on its way under its own deadline.

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        phase = self._phase
        if phase in (HEAD, BODY):
            seconds = self.timeouts.header if phase == HEAD else self.timeouts.body
            message = f"the request {phase} was not received within {seconds:g} s"
            cycle: Any = self.cycle
            if phase == BODY and cycle is not None and not cycle.response_complete:
                cycle.scope[TIMED_OUT] = True
                cycle.disconnected = True  # the app's next receive() reads a disconnect; its answer is dropped
                cycle.message_event.set()
                if not cycle.response_started:
                    self.transport.write(_timeout_response(message))
            elif phase == HEAD and (cycle is None or cycle.response_complete):
                self.transport.write(_timeout_response(message))
            log.debug("%s: %s; connection closed", _peer(self.client), message)
            self.on_timeout(phase)
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "client"


def deadline_protocol(timeouts: ConnectionTimeouts, on_timeout: Callable[[str], None]) -> type[DeadlineProtocol]:
    """The protocol class to give uvicorn (``http=``), holding these deadlines."""
    return type(
        "DeadlineProtocol",
        (DeadlineProtocol,),
        {"timeouts": timeouts, "on_timeout": staticmethod(on_timeout)},
    )


def check_can_listen(host: str, port: int) -> None:
    """Bind the address once, as uvicorn will (address reuse on), and say in one line why it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {err.strerror or err}; another server is there, or pass --port"
            ) from None
