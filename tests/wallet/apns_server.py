"""A local APNs stand-in: HTTP/2 over TLS (h2), requiring a client certificate signed by the test CA.

It records every request (path, headers, body, the client certificate presented, which connection carried it)
and answers with the statuses scripted per device token (200 when nothing is scripted).
"""

import json
import select
import socket
import ssl
import threading
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.events

REASONS = {400: "BadDeviceToken", 403: "BadCertificate", 410: "Unregistered", 429: "TooManyRequests"}


@dataclass(frozen=True)
class RecordedPush:
    path: str
    headers: dict[str, str]
    body: bytes
    peer_certificate: bytes
    connection: int


class ApnsStandIn:
    def __init__(self, *, cert_file: Path, key_file: Path, client_ca_files: list[Path]) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile=cert_file, keyfile=key_file)
        for ca_file in client_ca_files:
            self.context.load_verify_locations(cafile=ca_file)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.set_alpn_protocols(["h2"])
        self.pushes: list[RecordedPush] = []
        self.handshake_failures = 0
        self.connections = 0
        self.script: dict[str, deque[int]] = defaultdict(deque)
        self.reasons: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, token: str, *statuses: int, reason: str = "") -> None:
        """Script the next answers for a token, in order; 200 once they are used up. `reason` replaces the usual
        reason of its error answers."""
        self.script[token].extend(statuses)
        if reason:
            self.reasons[token] = reason

    def start(self) -> None:
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        try:
            sock = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.handshake_failures += 1
            raw.close()
            return
        with self._lock:
            self.connections += 1
            connection_number = self.connections
        peer = sock.getpeercert(binary_form=True) or b""
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        streams: dict[int, dict] = {}
        sock.settimeout(5)
        try:
            while not self._stop.is_set():
                # Wait for input in short slices (to notice stop()) but read whole TLS records without a timeout.
                if not sock.pending() and not select.select([sock], [], [], 0.1)[0]:
                    continue
                data = sock.recv(65535)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers = {_text(k): _text(v) for k, v in event.headers}
                        streams[event.stream_id] = {"headers": headers, "body": b""}
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id]["body"] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self._respond(conn, event.stream_id, streams.pop(event.stream_id), peer, connection_number)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return
                sock.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError):
            return
        finally:
            sock.close()

    def _respond(self, conn, stream_id: int, stream: dict, peer: bytes, connection_number: int) -> None:
        headers = stream["headers"]
        path = headers.get(":path", "")
        token = path.rsplit("/", 1)[-1]
        with self._lock:
            self.pushes.append(RecordedPush(path, headers, stream["body"], peer, connection_number))
            status = self.script[token].popleft() if self.script[token] else 200
        apns_id = str(uuid.uuid4()).upper()
        if status == 200:
            conn.send_headers(stream_id, [(":status", "200"), ("apns-id", apns_id)], end_stream=True)
            return
        body = json.dumps({"reason": self.reasons.get(token) or REASONS.get(status, "ServiceUnavailable")}).encode()
        conn.send_headers(
            stream_id,
            [(":status", str(status)), ("apns-id", apns_id), ("content-length", str(len(body)))],
        )
        conn.send_data(stream_id, body, end_stream=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
