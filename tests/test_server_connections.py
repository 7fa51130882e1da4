"""tagger/serving/connections.py: uvicorn's protocol as `tagger serve` runs it, fed bytes directly (a transport
that records what the server writes), with a small ASGI app in place of the tagger."""
from __future__ import annotations

import asyncio
import functools

from uvicorn.config import Config
from uvicorn.server import ServerState

from tagger.serving.connections import BoundedHttpTools


async def hello(scope, receive, send) -> None:
    """Answers every request "hello" once its body is in."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


class Transport:
    """What the protocol writes, one entry a write, and whether it closed the connection."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default=None):
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class CountingLoop:
    """The running loop, counting the timers armed for the headers deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.header_timers = loop, 0

    def call_at(self, when, callback, *args):
        self.header_timers += getattr(callback, "__name__", "") == "_check_headers"
        return self.loop.call_at(when, callback, *args)

    def __getattr__(self, name):
        return getattr(self.loop, name)


def connect(header_timeout_s: float = 10.0) -> tuple[BoundedHttpTools, Transport, CountingLoop]:
    config = Config(hello, lifespan="off", log_level="warning", proxy_headers=False)
    config.load()
    loop = CountingLoop(asyncio.get_running_loop())
    protocol = functools.partial(BoundedHttpTools, header_timeout_s=header_timeout_s)(
        config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport, loop


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_an_answer_goes_out_in_one_write():
    """uvicorn writes the head, then the body: two system calls and two TCP segments for every answer."""
    async def run() -> list[bytes]:
        protocol, transport, _ = connect()
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        await settle()
        return transport.writes

    writes = asyncio.run(run())
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\nhello")


def test_a_head_answer_and_a_100_continue_still_go_out():
    """A HEAD answer has no body to carry its head: the head goes at the end of the loop's turn. A 100
    Continue goes at once, before the answer."""
    async def run() -> tuple[list[bytes], list[bytes]]:
        protocol, transport, _ = connect()
        protocol.data_received(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        await settle()
        head = list(transport.writes)
        protocol, transport, _ = connect()
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        await settle()
        protocol.data_received(b"hi")
        await settle()
        return head, transport.writes

    head, continued = asyncio.run(run())
    assert b"".join(head).startswith(b"HTTP/1.1 200 OK\r\n") and b"".join(head).endswith(b"\r\n\r\n")
    assert continued[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert b"".join(continued[1:]).startswith(b"HTTP/1.1 200 OK") and continued[-1].endswith(b"hello")


def test_keep_alive_requests_arm_the_headers_timer_once_a_connection():
    """The headers deadline moves with each request; the timer is not cancelled and re-armed per request."""
    async def run() -> tuple[int, int]:
        protocol, transport, loop = connect()
        for _ in range(20):
            protocol.data_received(GET)
            await settle()
        return loop.header_timers, b"".join(transport.writes).count(b"hello")

    timers, answers = asyncio.run(run())
    assert answers == 20
    assert timers == 1


def test_slow_headers_are_closed_and_a_busy_connection_is_not():
    """A connection sending requests for longer than the timeout stays open (the timer re-arms for the
    deadline it finds); headers that stop half-way are closed at the timeout."""
    async def run() -> tuple[bool, int, bool]:
        protocol, transport, _ = connect(header_timeout_s=0.2)
        for _ in range(8):  # 0.4 s of requests, each well within 0.2 s
            protocol.data_received(GET)
            await asyncio.sleep(0.05)
        open_after_requests = not transport.closed
        protocol.data_received(b"GET / HTTP/1.1\r\nHost:")  # and nothing more
        await asyncio.sleep(0.1)
        open_midway = not transport.closed
        await asyncio.sleep(0.3)
        return open_after_requests, b"".join(transport.writes).count(b"hello"), open_midway and transport.closed

    open_after_requests, answers, closed_at_timeout = asyncio.run(run())
    assert open_after_requests and answers == 8
    assert closed_at_timeout
