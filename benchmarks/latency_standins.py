"""Fast local stand-ins for the providers, answering every request after a fixed latency without blocking the others.

Unlike the fault stand-ins of tests/faults (a thread per connection, HTTP/1.1), these are built to measure a client:
one asyncio event loop in a process of its own (so its CPU is not the client's), HTTP/2 (the h2 library) and a
minimal HTTP/1.1, so thousands of requests can be in flight at once. Each request is answered `latency` seconds
after it arrived (loop.call_later), whatever else is in flight.

- fcm: FCM HTTP v1, POST /v1/projects/<p>/messages:send (Bearer token required) answering {"name": ...}, and the
  OAuth2 token endpoint POST /token. TLS with ALPN h2 and http/1.1 (requests speaks HTTP/1.1, httpx may speak h2).
- apns: APNs, POST /3/device/<token> (apns-topic required), 200 with an apns-id header. HTTP/2 only, TLS with a
  client certificate required (signed by the stand-in's CA).
- twilio: POST /2010-04-01/Accounts/<sid>/Messages.json with basic auth, 201 {"sid": "SM..."}. h2 or HTTP/1.1.
- google: Google Wallet loyalty objects, POST .../loyaltyObject/<id>/addMessage answering {"resource": object},
  GET and PATCH .../loyaltyObject/<id>, and POST /token. h2 or HTTP/1.1.

Every stand-in counts on its side connections (by protocol), requests (by kind: "api" is the provider call
being measured, "token", "object" for Google's GET/PATCH), answers by status, the most requests in flight at once,
its own CPU time, and the arrival time (time.time()) of every "api" request, so a quota check can count the
requests in any window (`max_in_window`).

Used from Python (`with LatencyStandIn("fcm", certs=make_certs(tmp)) as standin: standin.base_url ...`), or run
on its own for manual tests: `python -m benchmarks.latency_standins --provider fcm --latency-ms 50`.
TLS: a throw-away CA and a server certificate for 127.0.0.1/localhost (`make_certs`); the client must trust the CA
(see benchmarks/README.md: APNS_CA_FILE, REQUESTS_CA_BUNDLE for requests, SSL_CERT_FILE for httpx).
"""

import argparse
import array
import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import itertools
import json
import multiprocessing
import os
import queue
import resource
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

PROVIDERS = ("fcm", "apns", "twilio", "google")
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_LATENCY = 0.05
DEFAULT_MAX_STREAMS = 1000
REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 411: "Length Required"}
MAX_HEADER_BYTES = 64 * 1024


# ---------------------------------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class Certs:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA (PEM)."""

    directory: Path
    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path


def make_certs(directory: Path | str, *, client_uid: str = "pass.com.example.benchmark") -> Certs:
    """Write a throw-away CA, server and client certificate (EC P-256 keys) to `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def build(subject: x509.Name, key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool, extensions: list) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        )
        if ca:
            usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        else:
            usage = x509.KeyUsage(True, False, False, False, True, False, False, False, False)
        builder = builder.add_extension(usage, critical=True)
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Benchmark Stand-in CA")])
    ca = build(ca_name, ca_key, ca_name, ca_key, ca=True, extensions=[])
    server = build(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        server_key,
        ca_name,
        ca_key,
        ca=False,
        extensions=[
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        ],
    )
    client = build(
        x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"Pass Type ID: {client_uid}"),
                x509.NameAttribute(NameOID.USER_ID, client_uid),
            ]
        ),
        client_key,
        ca_name,
        ca_key,
        ca=False,
        extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])],
    )

    def key_pem(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    files = {
        "ca.pem": ca.public_bytes(serialization.Encoding.PEM),
        "server_cert.pem": server.public_bytes(serialization.Encoding.PEM),
        "server_key.pem": key_pem(server_key),
        "client_cert.pem": client.public_bytes(serialization.Encoding.PEM),
        "client_key.pem": key_pem(client_key),
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return Certs(
        directory=directory,
        ca_file=directory / "ca.pem",
        server_cert_file=directory / "server_cert.pem",
        server_key_file=directory / "server_key.pem",
        client_cert_file=directory / "client_cert.pem",
        client_key_file=directory / "client_key.pem",
    )


def write_service_account_key(directory: Path | str, *, token_uri: str, project_id: str = "bench-project") -> Path:
    """A Google service-account key file (RSA, as google-auth needs) whose token_uri is the stand-in's /token."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "bench-key",
        "private_key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "client_email": f"bench@{project_id}.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    path = Path(directory) / f"service-account-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(info))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Window arithmetic (used by the quota benchmark on the stand-in's timestamps)


def max_in_window(timestamps: Iterable[float], window: float) -> int:
    """The most timestamps in any half-open interval (t - window, t]."""
    ordered = sorted(timestamps)
    best = low = 0
    for high, when in enumerate(ordered):
        while when - ordered[low] >= window:
            low += 1
        best = max(best, high - low + 1)
    return best


def per_second(timestamps: Iterable[float]) -> list[int]:
    """Request counts per whole second from the first timestamp on."""
    ordered = sorted(timestamps)
    if not ordered:
        return []
    counts = Counter(int(when - ordered[0]) for when in ordered)
    return [counts.get(second, 0) for second in range(max(counts) + 1)]


# ---------------------------------------------------------------------------------------------------------------
# The server side (runs in the stand-in's own process)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    kind: str = "api"


def json_reply(status: int, payload: Any, *, kind: str = "api", headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, json.dumps(payload).encode(), [("content-type", "application/json"), *(headers or [])], kind)


class Provider:
    """How one provider answers; `handle` runs on the event loop and must be quick."""

    alpn: tuple[str, ...] = ("h2", "http/1.1")
    client_certificate = False

    def __init__(self) -> None:
        self.counter = itertools.count(1)

    def handle(self, request: Request) -> Reply:  # pragma: no cover - overridden
        raise NotImplementedError

    def token(self, request: Request) -> Reply:
        """Google's OAuth2 token endpoint: a JWT-bearer assertion in, an access token out."""
        if "assertion=" not in request.body.decode(errors="replace"):
            return json_reply(400, {"error": "invalid_grant"}, kind="token")
        payload = {"access_token": f"ya29.bench-{uuid.uuid4().hex}", "expires_in": 3600, "token_type": "Bearer"}
        return json_reply(200, payload, kind="token")


def _not_found(kind: str = "other") -> Reply:
    return json_reply(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}, kind=kind)


def _unauthorized_google() -> Reply:
    return json_reply(401, {"error": {"code": 401, "message": "Bad token", "status": "UNAUTHENTICATED"}})


class FcmProvider(Provider):
    def handle(self, request: Request) -> Reply:
        if request.path == "/token" and request.method == "POST":
            return self.token(request)
        parts = request.path.split("/")  # "", "v1", "projects", "<p>", "messages:send"
        if len(parts) != 5 or parts[1:3] != ["v1", "projects"] or parts[4] != "messages:send":
            return _not_found()
        if request.method != "POST":
            return _not_found()
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _unauthorized_google()
        try:
            token = request.json()["message"]["token"]
        except (ValueError, KeyError, TypeError):
            token = ""
        if not token:
            return json_reply(400, {"error": {"code": 400, "message": "No token", "status": "INVALID_ARGUMENT"}})
        return json_reply(200, {"name": f"projects/{parts[3]}/messages/{next(self.counter)}"})


class ApnsProvider(Provider):
    alpn = ("h2",)
    client_certificate = True

    def handle(self, request: Request) -> Reply:
        if request.method != "POST" or not request.path.startswith("/3/device/"):
            return json_reply(404, {"reason": "BadPath"}, kind="other")
        if not request.headers.get("apns-topic"):
            return json_reply(400, {"reason": "MissingTopic"})
        return Reply(200, headers=[("apns-id", str(uuid.uuid4()).upper())])


class TwilioProvider(Provider):
    def handle(self, request: Request) -> Reply:
        parts = request.path.split("/")  # "", "2010-04-01", "Accounts", "<sid>", "Messages.json"
        if len(parts) != 5 or parts[1:3] != ["2010-04-01", "Accounts"] or parts[4] != "Messages.json":
            return json_reply(404, {"code": 20404, "message": "Not found", "status": 404}, kind="other")
        if request.method != "POST":
            return json_reply(404, {"code": 20404, "message": "Not found", "status": 404}, kind="other")
        authorization = request.headers.get("authorization", "")
        try:
            user = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")[0]
        except ValueError:
            user = ""
        if not authorization.startswith("Basic ") or user != parts[3]:
            return json_reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
        form = parse_qs(request.body.decode(errors="replace"))
        to = (form.get("To") or [""])[0]
        if not to or not (form.get("Body") or [""])[0]:
            return json_reply(400, {"code": 21604, "message": "A 'To' and 'Body' are required", "status": 400})
        sid = f"SM{next(self.counter):032x}"
        return json_reply(201, {"sid": sid, "status": "queued", "to": to, "account_sid": parts[3]})


class GoogleWalletProvider(Provider):
    PREFIX = "/walletobjects/v1/loyaltyObject/"

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, dict[str, Any]] = {}

    def _object(self, object_id: str) -> dict[str, Any]:
        return self.objects.setdefault(
            object_id, {"kind": "walletobjects#loyaltyObject", "id": object_id, "state": "ACTIVE", "messages": []}
        )

    def handle(self, request: Request) -> Reply:
        if request.path == "/token" and request.method == "POST":
            return self.token(request)
        if not request.path.startswith(self.PREFIX):
            return _not_found()
        object_id, _, action = request.path[len(self.PREFIX) :].partition("/")
        if not object_id:
            return _not_found()
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _unauthorized_google()
        if action == "addMessage" and request.method == "POST":
            try:
                message = request.json()["message"]
            except (ValueError, KeyError, TypeError):
                message = None
            if not isinstance(message, dict):
                return json_reply(400, {"error": {"code": 400, "message": "Invalid", "status": "INVALID_ARGUMENT"}})
            obj = self._object(object_id)
            obj["messages"].append(message)
            return json_reply(200, {"resource": obj})
        if action == "" and request.method == "GET":
            return json_reply(200, self._object(object_id), kind="object")
        if action == "" and request.method == "PATCH":
            try:
                patch = request.json()
            except ValueError:
                patch = None
            if not isinstance(patch, dict):
                return json_reply(400, {"error": {"code": 400, "message": "Invalid", "status": "INVALID_ARGUMENT"}})
            obj = self._object(object_id)
            obj.update({key: value for key, value in patch.items() if key != "id"})
            return json_reply(200, obj, kind="object")
        return _not_found()


PROVIDER_CLASSES: dict[str, Callable[[], Provider]] = {
    "fcm": FcmProvider,
    "apns": ApnsProvider,
    "twilio": TwilioProvider,
    "google": GoogleWalletProvider,
}


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.connections = 0
        self.connections_by_protocol: Counter[str] = Counter()
        self.requests_by_kind: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.handshake_failures = 0
        self.protocol_errors: Counter[str] = Counter()
        self.goaways: Counter[str] = Counter()
        self.resets = 0
        self.api_timestamps = array.array("d")
        self.cpu_start = _cpu_seconds()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Server:
    """The stand-in's state, shared by its connections (all on one event loop, so no locks)."""

    def __init__(self, provider: str, *, latency: float, max_streams: int) -> None:
        self.name = provider
        self.provider = PROVIDER_CLASSES[provider]()
        self.latency = latency
        self.max_streams = max_streams
        self.stats = Stats()
        self.loop = asyncio.get_event_loop()

    def received(self, request: Request, respond: Callable[[Reply], None]) -> None:
        """Answer `request` through `respond` after the latency; count it."""
        try:
            reply = self.provider.handle(request)
        except Exception as exc:  # a stand-in bug must show, not hang the client
            reply = json_reply(500, {"error": repr(exc)}, kind="error")
        stats = self.stats
        stats.requests_by_kind[reply.kind] += 1
        if reply.kind == "api":
            stats.api_timestamps.append(time.time())
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)

        def answer() -> None:
            stats.in_flight -= 1
            stats.statuses[str(reply.status)] += 1
            respond(reply)

        if self.latency > 0:
            self.loop.call_later(self.latency, answer)
        else:
            self.loop.call_soon(answer)

    def snapshot(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "provider": self.name,
            "latency_ms": round(self.latency * 1000, 3),
            "connections": stats.connections,
            "connections_by_protocol": dict(stats.connections_by_protocol),
            "requests": stats.requests_by_kind.get("api", 0),
            "requests_by_kind": dict(stats.requests_by_kind),
            "statuses": dict(stats.statuses),
            "in_flight": stats.in_flight,
            "max_in_flight": stats.max_in_flight,
            "handshake_failures": stats.handshake_failures,
            "protocol_errors": dict(stats.protocol_errors),
            "goaways": dict(stats.goaways),
            "stream_resets": stats.resets,
            "cpu_seconds": round(_cpu_seconds() - stats.cpu_start, 3),
        }


class Connection(asyncio.Protocol):
    """One client connection: HTTP/2 when ALPN chose h2 (or a plain-text client opens with the h2 preface), else
    HTTP/1.1 with keep-alive (answers in request order)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.mode = ""
        self.buffer = bytearray()
        self.closed = False
        # HTTP/2
        self.h2: h2.connection.H2Connection | None = None
        self.streams: dict[int, tuple[list[tuple[bytes, bytes]], bytearray]] = {}
        self.pending_data: dict[int, memoryview] = {}
        # HTTP/1.1
        self.answers: deque[list[Any]] = deque()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.stats.connections += 1
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._start("h2" if ssl_object.selected_alpn_protocol() == "h2" else "http/1.1")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        if self.mode == "h2":
            self._h2_received(data)
            return
        if self.mode == "":
            self.buffer += data
            if len(self.buffer) < len(H2_PREFACE) and H2_PREFACE.startswith(bytes(self.buffer)):
                return
            pending, self.buffer = bytes(self.buffer), bytearray()
            self._start("h2" if pending.startswith(H2_PREFACE) else "http/1.1")
            self.data_received(pending)
            return
        self.buffer += data
        self._h1_parse()

    def _start(self, mode: str) -> None:
        self.mode = mode
        self.server.stats.connections_by_protocol[mode] += 1
        if mode == "h2":
            # The clients are trusted (ours): skip h2's header validation, the largest part of its cost per request.
            config = h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
            self.h2 = h2.connection.H2Connection(config=config)
            self.h2.local_settings = h2.settings.Settings(
                client=False,
                initial_values={
                    h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams,
                    h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
                    h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.h2.DEFAULT_MAX_HEADER_LIST_SIZE,
                },
            )
            self.h2.initiate_connection()
            self.h2.increment_flow_control_window(1 << 24)
            self._flush()

    def _write(self, data: bytes) -> None:
        if data and not self.closed and self.transport is not None:
            self.transport.write(data)

    # -- HTTP/2

    def _flush(self) -> None:
        self._write(self.h2.data_to_send())

    def _h2_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.server.stats.protocol_errors[type(exc).__name__ + ": " + str(exc)[:120]] += 1
            self._flush()
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = (event.headers, bytearray())
                if event.stream_ended is not None:
                    self._h2_request(event.stream_id)
            elif isinstance(event, h2.events.DataReceived):
                if event.stream_id in self.streams:
                    self.streams[event.stream_id][1].extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                if event.stream_id in self.streams:
                    self._h2_request(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.server.stats.resets += 1
                self.streams.pop(event.stream_id, None)
                self.pending_data.pop(event.stream_id, None)
            elif isinstance(event, h2.events.WindowUpdated):
                self._h2_send_pending()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.server.stats.goaways[str(event.error_code)] += 1
                self._flush()
                self.transport.close()
                return
        self._flush()

    def _h2_request(self, stream_id: int) -> None:
        raw_headers, body = self.streams.pop(stream_id)
        headers = {_text(name): _text(value) for name, value in raw_headers}
        request = Request(
            method=headers.get(":method", "GET"),
            path=unquote(urlsplit(headers.get(":path", "/")).path),
            headers=headers,
            body=bytes(body),
        )
        self.server.received(request, lambda reply: self._h2_answer(stream_id, reply))

    def _h2_answer(self, stream_id: int, reply: Reply) -> None:
        if self.closed:
            return
        headers = [(":status", str(reply.status)), *reply.headers, ("content-length", str(len(reply.body)))]
        try:
            self.h2.send_headers(stream_id, headers, end_stream=not reply.body)
            if reply.body:
                self.pending_data[stream_id] = memoryview(reply.body)
                self._h2_send_pending(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.pending_data.pop(stream_id, None)
        self._flush()

    def _h2_send_pending(self, only: int | None = None) -> None:
        for stream_id in [only] if only is not None else list(self.pending_data):
            data = self.pending_data.get(stream_id)
            if data is None:
                continue
            try:
                while data:
                    window = self.h2.local_flow_control_window(stream_id)
                    size = min(window, self.h2.max_outbound_frame_size, len(data))
                    if size <= 0:
                        break
                    self.h2.send_data(stream_id, data[:size].tobytes(), end_stream=size == len(data))
                    data = data[size:]
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                data = memoryview(b"")
            if data:
                self.pending_data[stream_id] = data
            else:
                self.pending_data.pop(stream_id, None)

    # -- HTTP/1.1

    def _h1_parse(self) -> None:
        while not self.closed:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self.transport.close()
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            try:
                method, target, version = head[0].split(" ", 2)
            except ValueError:
                self.transport.close()
                return
            headers: dict[str, str] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            start = end + 4
            if "chunked" in headers.get("transfer-encoding", "").lower():
                parsed = _dechunk(self.buffer, start)
                if parsed is None:
                    return
                body, consumed = parsed
            else:
                length = int(headers.get("content-length") or 0)
                if len(self.buffer) < start + length:
                    return
                body, consumed = bytes(self.buffer[start : start + length]), start + length
            del self.buffer[:consumed]
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            slot: list[Any] = [None, keep_alive]
            self.answers.append(slot)
            request = Request(method=method, path=unquote(urlsplit(target).path), headers=headers, body=body)
            self.server.received(request, lambda reply, slot=slot: self._h1_answer(slot, reply))

    def _h1_answer(self, slot: list[Any], reply: Reply) -> None:
        slot[0] = reply
        while self.answers and self.answers[0][0] is not None:
            ready, keep_alive = self.answers.popleft()
            lines = [f"HTTP/1.1 {ready.status} {REASONS.get(ready.status, 'Status')}"]
            lines += [f"{name}: {value}" for name, value in ready.headers]
            lines.append(f"content-length: {len(ready.body)}")
            if not keep_alive:
                lines.append("connection: close")
            self._write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + ready.body)
            if not keep_alive:
                self.transport.close()
                return


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body from `start`: (body, bytes consumed) once complete, else None (trailers are skipped)."""
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0] or b"0", 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", position)
            while trailer_end > position:  # a trailer line; skip it
                position = trailer_end + 2
                trailer_end = buffer.find(b"\r\n", position)
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 2
        if len(buffer) < position + size + 2:
            return None
        body += buffer[position : position + size]
        position += size + 2


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def server_ssl_context(*, certs: dict[str, str], alpn: Iterable[str], client_certificate: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile=certs["server_cert_file"], keyfile=certs["server_key_file"])
    context.set_alpn_protocols(list(alpn))
    if client_certificate:
        context.load_verify_locations(cafile=certs["ca_file"])
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def serve(config: dict[str, Any], control: Any = None) -> None:
    """The stand-in process: serve until told to stop (a "stop" on `control`, a multiprocessing Connection, or
    SIGTERM/SIGINT when run on its own). Sends ("ready", port) on `control` once listening."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(config["provider"], latency=config["latency"], max_streams=config["max_streams"])
    provider = server.provider
    context = None
    if config.get("certs"):
        alpn = config.get("alpn") or provider.alpn
        context = server_ssl_context(certs=config["certs"], alpn=alpn, client_certificate=provider.client_certificate)

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), ssl.SSLError | ConnectionError | OSError):
            server.stats.handshake_failures += 1
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(on_loop_error)
    try:
        listener = loop.run_until_complete(
            loop.create_server(
                lambda: Connection(server),
                config.get("host", "127.0.0.1"),
                config.get("port", 0),
                ssl=context,
                backlog=4096,
            )
        )
    except OSError as exc:
        if control is not None:
            control.send(("error", repr(exc)))
        raise
    port = listener.sockets[0].getsockname()[1]
    stopped = loop.create_future()

    def stop() -> None:
        if not stopped.done():
            stopped.set_result(None)

    if control is not None:

        def on_command() -> None:
            try:
                if not control.poll():
                    return
                command = control.recv()
            except (EOFError, OSError):
                stop()  # the parent is gone
                return
            if command == "stats":
                control.send(server.snapshot())
            elif command == "timestamps":
                control.send(list(server.stats.api_timestamps))
            elif command == "reset":
                server.stats.reset()
                control.send(True)
            elif command == "stop":
                control.send(True)
                stop()

        loop.add_reader(control.fileno(), on_command)
        control.send(("ready", port))
    else:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        ca_file = (config.get("certs") or {}).get("ca_file")
        print(json.dumps({"provider": config["provider"], "port": port, "ca_file": ca_file}), flush=True)
    try:
        loop.run_until_complete(stopped)
    finally:
        if control is not None:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(control.fileno())
        listener.close()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait_for(listener.wait_closed(), 1))
        loop.close()
        if control is None:
            print(json.dumps(server.snapshot()), flush=True)


# ---------------------------------------------------------------------------------------------------------------
# The client side: start, query and stop a stand-in process


class LatencyStandIn:
    """A stand-in in a process of its own (multiprocessing spawn). `tls=True` needs `certs` (see make_certs)."""

    def __init__(
        self,
        provider: str,
        *,
        latency: float = DEFAULT_LATENCY,
        certs: Certs | None = None,
        tls: bool = True,
        alpn: Iterable[str] | None = None,
        max_streams: int = DEFAULT_MAX_STREAMS,
        start_timeout: float = 30.0,
    ) -> None:
        if provider not in PROVIDER_CLASSES:
            raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
        if tls and certs is None:
            raise ValueError("a TLS stand-in needs certs (make_certs)")
        if provider == "apns" and not tls:
            raise ValueError("the APNs stand-in speaks only HTTP/2 over TLS")
        self.provider = provider
        self.latency = latency
        self.certs = certs if tls else None
        self.alpn = tuple(alpn) if alpn else None
        self.max_streams = max_streams
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self._process: Any = None
        self._control: Any = None

    @property
    def scheme(self) -> str:
        return "https" if self.certs is not None else "http"

    @property
    def address(self) -> str:
        """host:port, as APNS_HOST takes it."""
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.address}"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def start(self) -> "LatencyStandIn":
        context = multiprocessing.get_context("spawn")
        self._control, child = context.Pipe()
        config = {
            "provider": self.provider,
            "latency": self.latency,
            "max_streams": self.max_streams,
            "alpn": list(self.alpn) if self.alpn else None,
            "certs": {key: str(value) for key, value in asdict(self.certs).items()} if self.certs else None,
        }
        self._process = context.Process(
            target=serve, args=(config, child), daemon=True, name=f"latency-standin-{self.provider}"
        )
        self._process.start()
        child.close()
        if not self._control.poll(self.start_timeout):
            self.stop()
            raise RuntimeError(f"the {self.provider} stand-in did not start within {self.start_timeout}s")
        status, value = self._control.recv()
        if status != "ready":
            self.stop()
            raise RuntimeError(f"the {self.provider} stand-in failed to start: {value}")
        self.port = int(value)
        return self

    def _ask(self, command: str, timeout: float = 30.0) -> Any:
        self._control.send(command)
        if not self._control.poll(timeout):
            raise RuntimeError(f"the {self.provider} stand-in did not answer {command!r}")
        return self._control.recv()

    def stats(self) -> dict[str, Any]:
        """Connections, requests (the provider calls; by kind), statuses, max in flight, the stand-in's CPU."""
        return self._ask("stats")

    def timestamps(self) -> list[float]:
        """The arrival time (time.time()) of every provider call ("api" request) since the start or reset()."""
        return self._ask("timestamps")

    def reset(self) -> None:
        self._ask("reset")

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.is_alive() and self._control is not None:
            with contextlib.suppress(OSError, EOFError, RuntimeError):
                self._ask("stop", timeout=5)
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        if self._control is not None:
            self._control.close()
        self._process = self._control = None

    def __enter__(self) -> "LatencyStandIn":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------------------
# The same stand-ins (fcm, apns) on Node's native HTTP/2 server: benchmarks/node_standin.mjs

NODE_STANDIN_SCRIPT = Path(__file__).with_name("node_standin.mjs")
NODE_PROVIDERS = ("fcm", "apns")


def node_binary() -> str | None:
    """The `node` to run node_standin.mjs with: $NODE if set, else `node` on PATH (None when there is none)."""
    return shutil.which(os.environ.get("NODE") or "node")


class NodeLatencyStandIn(LatencyStandIn):
    """LatencyStandIn's interface (base_url, token_uri, address, stats(), timestamps(), reset(), context manager)
    on benchmarks/node_standin.mjs, a `node` subprocess: its native HTTP/2 server costs the stand-in far less CPU
    per request than the Python one, so a client can be measured past ~1,500 messages/s on a small machine.
    FCM and APNs only, TLS only. Commands go one a line on the child's stdin, answers come back one JSON line each
    on its stdout (read by a thread); the child stops when told to or when its stdin closes."""

    def __init__(
        self,
        provider: str,
        *,
        latency: float = DEFAULT_LATENCY,
        certs: Certs | None = None,
        tls: bool = True,
        alpn: Iterable[str] | None = None,
        max_streams: int = DEFAULT_MAX_STREAMS,
        start_timeout: float = 30.0,
        node: str | None = None,
    ) -> None:
        if provider not in NODE_PROVIDERS:
            raise ValueError(f"the Node stand-in serves only {', '.join(NODE_PROVIDERS)}, not {provider!r}")
        if not tls or certs is None:
            raise ValueError("the Node stand-in speaks only TLS: it needs certs (make_certs)")
        if alpn:
            raise ValueError("the Node stand-in does not take an ALPN list")
        super().__init__(
            provider, latency=latency, certs=certs, tls=tls, max_streams=max_streams, start_timeout=start_timeout
        )
        self.node = node or node_binary()
        if not self.node:
            raise FileNotFoundError("the Node stand-in needs `node` on PATH (or NODE=/path/to/node)")
        self._lines: Any = None

    def start(self) -> "NodeLatencyStandIn":
        assert self.certs is not None
        command = [
            self.node,
            "--max-semi-space-size=32",  # MiB: fewer young-generation collections, ~10% less CPU per request
            str(NODE_STANDIN_SCRIPT),
            "--provider",
            self.provider,
            "--latency-ms",
            repr(self.latency * 1000),
            "--max-streams",
            str(self.max_streams),
            "--host",
            self.host,
            "--cert",
            str(self.certs.server_cert_file),
            "--key",
            str(self.certs.server_key_file),
            "--ca",
            str(self.certs.ca_file),
            "--control",
        ]
        self._process = subprocess.Popen(  # stderr: the benchmark's own
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._lines = queue.Queue()

        def read(stdout: Any, lines: Any) -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)  # the child is gone

        threading.Thread(target=read, args=(self._process.stdout, self._lines), daemon=True).start()
        try:
            ready = self._next(self.start_timeout, "start")
        except RuntimeError:
            self.stop()
            raise
        if not isinstance(ready, dict) or "port" not in ready:
            self.stop()
            raise RuntimeError(f"the Node {self.provider} stand-in failed to start: {ready}")
        self.port = int(ready["port"])
        return self

    def _next(self, timeout: float, what: str) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the Node {self.provider} stand-in did not answer {what!r} within {timeout}s") from None
        if line is None:
            code = None
            with contextlib.suppress(subprocess.TimeoutExpired, AttributeError):
                code = self._process.wait(timeout=2)
            raise RuntimeError(f"the Node {self.provider} stand-in exited (status {code}) before answering {what!r}")
        return json.loads(line)

    def _ask(self, command: str, timeout: float = 30.0) -> Any:
        if self._process is None:
            raise RuntimeError(f"the Node {self.provider} stand-in is not running")
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._next(timeout, command)

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                self._ask("stop", timeout=5)
        with contextlib.suppress(OSError, ValueError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        with contextlib.suppress(OSError, ValueError):
            self._process.stdout.close()
        self._process = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one latency stand-in in the foreground (Ctrl-C stops it).")
    parser.add_argument("--provider", choices=PROVIDERS, required=True)
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY * 1000)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--certs", help="directory with ca.pem, server_*.pem, client_*.pem (written when missing; default: a temp dir)"
    )
    parser.add_argument("--no-tls", action="store_true", help="plain HTTP (h2 with prior knowledge or HTTP/1.1)")
    parser.add_argument("--max-streams", type=int, default=DEFAULT_MAX_STREAMS)
    args = parser.parse_args(argv)
    certs = None
    if not args.no_tls:
        directory = Path(args.certs or tempfile.mkdtemp(prefix="standin-certs-"))
        found = directory / "ca.pem"
        certs = (
            Certs(
                directory=directory,
                ca_file=found,
                server_cert_file=directory / "server_cert.pem",
                server_key_file=directory / "server_key.pem",
                client_cert_file=directory / "client_cert.pem",
                client_key_file=directory / "client_key.pem",
            )
            if found.is_file()
            else make_certs(directory)
        )
    config = {
        "provider": args.provider,
        "latency": args.latency_ms / 1000,
        "max_streams": args.max_streams,
        "port": args.port,
        "certs": {key: str(value) for key, value in asdict(certs).items()} if certs else None,
    }
    serve(config)


if __name__ == "__main__":
    main()
