"""A local HTTP/1.1 server whose answers a test scripts: for the shared HTTP machinery's tests, which need a real
peer (libcurl cannot be mocked) but no provider's protocol.

Each request takes the next answer of `script` (the last one repeats): a `Reply`, RESET (read the request, then
reset the connection: it may have been acted on), CLOSE (read it, then close the connection cleanly without an
answer), HANG (read it and never answer) or a callable given the request.
`requests` holds every request received, `times` when each arrived (on the test's clock, when it gives one).
"""

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RESET = "reset"
CLOSE = "close"
HANG = "hang"


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    # Many connections open at once: the default backlog of 5 would make the rest retry their SYN a second later.
    request_queue_size = 128


class ScriptedServer:
    def __init__(self, *script: Any, clock: Callable[[], float] | None = None) -> None:
        self.script = list(script) or [Reply(200, {})]
        self.clock = clock
        self.requests: list[Received] = []
        self.times: list[float] = []
        self.connections = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"

    def __enter__(self) -> "ScriptedServer":
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def next_answer(self, received: Received) -> Any:
        with self.lock:
            self.requests.append(received)
            if self.clock is not None:
                self.times.append(self.clock())
            answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return answer(received) if callable(answer) else answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with scripted.lock:
                    scripted.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with scripted.lock:
                    scripted.in_flight += 1
                    scripted.most_in_flight = max(scripted.most_in_flight, scripted.in_flight)
                try:
                    answer = scripted.next_answer(received)
                    if answer == HANG:
                        scripted.release.wait()
                    if answer in (RESET, CLOSE, HANG):
                        if answer != CLOSE:
                            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.close_connection = True
                        with contextlib.suppress(OSError):
                            self.connection.close()
                        return
                    data = (
                        b""
                        if answer.body is None
                        else (answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode())
                    )
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with scripted.lock:
                        scripted.in_flight -= 1

        return Handler


def closed_port_url() -> str:
    """A URL nobody listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/send"
