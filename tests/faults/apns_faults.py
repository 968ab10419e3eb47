"""A fault-injecting APNs stand-in: HTTP/2 over TLS (h2) with client certificates, like tests/wallet/apns_server.py.

It counts deliveries per device token (the last segment of /3/device/<token>) and answers each push according to
a `Fault` (shared with the HTTP stand-ins), set for all pushes (`standin.fault`) or scripted per token
(`standin.script(token, [...])`, items may also be a `Reply`, e.g. from `reject(token, "BadDeviceToken")`).

Fault semantics on HTTP/2: ACCEPT_THEN_TIMEOUT answers that stream only after `slow_seconds` (other streams on the
connection are answered meanwhile); RESET_AFTER_RECEIPT resets the whole TCP connection (every stream on it);
HANGING as the global fault when a connection opens completes the TLS handshake and then never speaks HTTP/2
(the client's request times out); HANGING for a push already on an open connection leaves its stream unanswered.
"""

import json
import select
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from tests.faults.standins import ACTING_FAULTS, Fault, Reply, TcpStandIn, reset_connection

ERROR_REASONS = {
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


class ApnsFaultStandIn(TcpStandIn):
    """Serve APNs on 127.0.0.1:`port`; point APNS_HOST at `host` ("127.0.0.1:port") and APNS_CA_FILE at the CA."""

    def __init__(
        self,
        *,
        cert_file: Path,
        key_file: Path,
        client_ca_files: list[Path],
        ca_file: Path | None = None,
        fault: Fault = Fault.OK,
        slow_seconds: float = 3.0,
    ) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile=cert_file, keyfile=key_file)
        for client_ca in client_ca_files:
            self.context.load_verify_locations(cafile=client_ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.set_alpn_protocols(["h2"])
        self.ca_file = ca_file
        self.handshake_failures = 0
        self.pushes: list[dict[str, Any]] = []  # path, headers, body, token of every push received
        super().__init__(fault=fault, slow_seconds=slow_seconds)

    @classmethod
    def from_chain(cls, chain: Any, **kwargs: Any) -> "ApnsFaultStandIn":
        """Build from tests.wallet.certs.make_chain(): its server certificate, trusting the CA and WWDR intermediate."""
        return cls(
            cert_file=chain.server_cert_file,
            key_file=chain.server_key_file,
            client_ca_files=[chain.ca_file, chain.wwdr_file],
            ca_file=chain.ca_file,
            **kwargs,
        )

    def configure(self, settings: Any) -> None:
        """Point APNS_HOST (and APNS_CA_FILE when known) at this stand-in."""
        settings.APNS_HOST = self.address
        if self.ca_file is not None:
            settings.APNS_CA_FILE = str(self.ca_file)

    def reject(self, token: str, reason: str = "BadDeviceToken", *, status: int = 400, times: int = 1) -> None:
        """Answer `status` {"reason": reason} to the next `times` pushes to `token` (not delivered)."""
        body: dict[str, Any] = {"reason": reason}
        if status == 410:
            body["timestamp"] = int(time.time() * 1000)
        self.script(token, [Reply(status, body)] * times)

    def serve_connection(self, raw: socket.socket, release: threading.Event) -> None:
        raw.settimeout(5)
        try:
            sock = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with self.lock:
                self.handshake_failures += 1
            return
        try:
            if self.fault is Fault.HANGING:
                release.wait()
                return
            self._speak_h2(sock, release)
        finally:
            sock.close()

    def _speak_h2(self, sock: ssl.SSLSocket, release: threading.Event) -> None:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        streams: dict[int, dict[str, Any]] = {}
        delayed: list[tuple[float, int, Reply]] = []
        while not release.is_set():
            now = time.monotonic()
            for item in [item for item in delayed if item[0] <= now]:
                delayed.remove(item)
                self._answer(conn, item[1], item[2])
            sock.sendall(conn.data_to_send())
            wait = min([0.05, *(due - now for due, _, _ in delayed)])
            if not sock.pending() and not select.select([sock], [], [], max(wait, 0))[0]:
                continue
            data = sock.recv(65535)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = {_text(k): _text(v) for k, v in event.headers}
                    streams[event.stream_id] = {"headers": headers, "body": b""}
                elif isinstance(event, h2.events.DataReceived):
                    streams[event.stream_id]["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    stream = streams.pop(event.stream_id)
                    action = self._decide(stream)
                    if action == "reset":
                        reset_connection(sock)
                        return
                    if isinstance(action, tuple):
                        delayed.append((time.monotonic() + action[0], event.stream_id, action[1]))
                    elif isinstance(action, Reply):
                        self._answer(conn, event.stream_id, action)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return
            sock.sendall(conn.data_to_send())

    def _decide(self, stream: dict[str, Any]) -> Any:
        """What to do with a complete push: a Reply now, (delay, Reply), "reset", or None (never answer)."""
        path = stream["headers"].get(":path", "")
        token = unquote(path.rsplit("/", 1)[-1]) if path.startswith("/3/device/") else ""
        with self.lock:
            self.pushes.append({**stream, "path": path, "token": token})
        fault = self.next_fault(token)
        if isinstance(fault, Reply):
            if fault.deliver:
                self.deliver(token)
            return fault
        if fault in ACTING_FAULTS:
            self.deliver(token)
        success = Reply(200)
        if fault is Fault.OK:
            return success
        if fault is Fault.ACCEPT_THEN_TIMEOUT:
            return (self.slow_seconds, success)
        if fault is Fault.RESET_AFTER_RECEIPT:
            return "reset"
        if fault is Fault.HTTP_500:
            return Reply(500, {"reason": ERROR_REASONS[500]})
        if fault is Fault.HTTP_503:
            return Reply(503, {"reason": ERROR_REASONS[503]})
        if fault is Fault.HTTP_503_RETRY_AFTER:
            return Reply(503, {"reason": ERROR_REASONS[503]}, {"retry-after": "1"})
        if fault is Fault.HTTP_429:
            return Reply(429, {"reason": ERROR_REASONS[429]}, {"retry-after": "1"})
        return None  # HANGING

    @staticmethod
    def _answer(conn: h2.connection.H2Connection, stream_id: int, reply: Reply) -> None:
        headers = [(":status", str(reply.status)), ("apns-id", str(uuid.uuid4()).upper())]
        headers += [(name.lower(), value) for name, value in reply.headers.items()]
        try:
            if reply.body is None:
                conn.send_headers(stream_id, headers, end_stream=True)
                return
            body = json.dumps(reply.body).encode()
            conn.send_headers(stream_id, [*headers, ("content-length", str(len(body)))])
            conn.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.H2Error:
            pass  # the client gave up on (reset) the stream meanwhile


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
