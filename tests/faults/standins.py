"""Fault-injecting local stand-ins for the HTTP providers: Twilio SMS, FCM HTTP v1 and Google Wallet.

Each stand-in is a real HTTP/1.1 server on 127.0.0.1 (a free port, kept across `down()`/`up()`), used as a context
manager. It counts on its own side what it delivered: `deliveries` is a Counter keyed by recipient (Twilio: the
form field To; FCM: message.token; Google Wallet: the object id in the path), incremented only when the provider
acted on the request (it would have sent the message). `requests` counts every request per recipient.

How it answers is a `Fault`, set for every request (`standin.fault = Fault.HTTP_503`) or scripted per recipient
(`standin.script("+15550001", [Fault.HTTP_503, Fault.OK])`: one item per request for that recipient, then
`standin.fault` again). A script item may also be a `Reply` (a provider-specific answer, e.g. FCM's 401).

The FCM and Google stand-ins also serve an OAuth2 token endpoint at `/token` (POST, answering an access token);
`write_service_account_key(directory, token_uri=standin.token_uri)` writes a key file pointing at it, and the API
endpoints then require a token it issued (`require_auth=False` turns that off; `expire_tokens()` makes every
issued token answer 401 so a client's refresh path runs).
"""

import base64
import contextlib
import dataclasses
import enum
import json
import secrets
import socket
import struct
import threading
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class Fault(enum.Enum):
    """How an HTTP stand-in (and the APNs one) answers a request. "Counted" means a delivery is recorded."""

    OK = "ok"  # act (counted) and answer success
    ACCEPT_THEN_TIMEOUT = "accept_then_timeout"  # act (counted), answer success only after slow_seconds
    RESET_AFTER_RECEIPT = "reset_after_receipt"  # read the request, act (counted), reset the TCP connection
    HTTP_500 = "http_500"  # act (counted: worst case), answer 500 with the provider's error body
    HTTP_503 = "http_503"  # not counted; 503 without Retry-After
    HTTP_503_RETRY_AFTER = "http_503_retry_after"  # not counted; 503 with Retry-After: 1
    HTTP_429 = "http_429"  # not counted; 429 with Retry-After: 1 and the provider's error body
    REFUSED = "refused"  # the listener is closed: connections are refused (global setting only)
    HANGING = "hanging"  # read the request, never answer, not counted


ACTING_FAULTS = frozenset({Fault.OK, Fault.ACCEPT_THEN_TIMEOUT, Fault.RESET_AFTER_RECEIPT, Fault.HTTP_500})


@dataclass(frozen=True)
class Reply:
    """A scripted answer: status, JSON body, extra headers; `deliver` says whether it counts as a delivery."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    deliver: bool = False


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    recipient: str = ""

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(self.body.decode()).items()}


def reset_connection(sock: socket.socket) -> None:
    """Close `sock` with SO_LINGER 0 so the peer gets a TCP RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class FaultState:
    """Counters, the fault setting and the per-recipient scripts; shared by every stand-in (any fault enum)."""

    refused_fault: Any = Fault.REFUSED

    def __init__(self, *, fault: Any, slow_seconds: float) -> None:
        self.lock = threading.RLock()
        self.slow_seconds = slow_seconds
        self.deliveries: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._scripts: dict[str, deque] = defaultdict(deque)
        self._fault = fault

    @property
    def total_requests(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    @property
    def fault(self) -> Any:
        return self._fault

    @fault.setter
    def fault(self, value: Any) -> None:
        previous, self._fault = self._fault, value
        if value is self.refused_fault:
            self.down()
        elif previous is self.refused_fault:
            self.up()

    def script(self, recipient: str, faults: Iterable[Any]) -> None:
        """Queue answers for `recipient`, one per request, used before falling back to `fault`."""
        faults = list(faults)
        if any(item is self.refused_fault for item in faults):
            raise ValueError("REFUSED cannot be scripted per recipient: set `fault` or call down()/up().")
        with self.lock:
            self._scripts[recipient].extend(faults)

    def scripted(self, recipient: str) -> list[Any]:
        """What is still queued for `recipient`."""
        with self.lock:
            return list(self._scripts.get(recipient, ()))

    def next_fault(self, recipient: str) -> Any:
        """Count a request for `recipient` and take its fault (the script's next item, else `fault`)."""
        with self.lock:
            self.requests[recipient] += 1
            queue = self._scripts.get(recipient)
            return queue.popleft() if queue else self._fault

    def deliver(self, recipient: str) -> None:
        with self.lock:
            self.deliveries[recipient] += 1

    def reset_counts(self) -> None:
        with self.lock:
            self.deliveries.clear()
            self.requests.clear()
            self._scripts.clear()

    def down(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def up(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class TcpStandIn(FaultState):
    """A listener on 127.0.0.1 with one thread per connection; down()/up() close and re-open it on the same port.

    `release` is an Event set when the listener goes down or stops: hanging and slow connections wait on it, so
    stopping never waits for them. Every open connection is shut on down()/stop().
    """

    def __init__(self, *, fault: Any, slow_seconds: float) -> None:
        super().__init__(fault=fault, slow_seconds=slow_seconds)
        self.host = "127.0.0.1"
        self.connections = 0
        self._state_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._release = threading.Event()
        self._started = False
        self._bind(0)  # the port is known (and kept) from here on; start() closes it again if fault is REFUSED

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        with self._state_lock:
            self._started = True
            if self._fault is self.refused_fault:
                self._close_listener()
                return
            if self._listener is None:
                self._bind(self.port)
            if self._accept_thread is None:
                self._launch()

    def stop(self) -> None:
        self.down()
        with self._state_lock:
            self._started = False

    def down(self) -> None:
        """Close the listener (connections are refused) and every open connection."""
        with self._state_lock:
            self._close_listener()

    def up(self) -> None:
        """Listen again on the same port."""
        with self._state_lock:
            if self._listener is None:
                self._bind(self.port)
                if self._started:
                    self._launch()

    def _bind(self, port: int) -> None:
        self._listener = socket.create_server((self.host, port), backlog=64)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._release = threading.Event()

    def _launch(self) -> None:
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(self._listener, self._release), daemon=True, name=f"{self}-accept"
        )
        self._accept_thread.start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        self._release.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None
        if listener is not None:
            listener.close()
        with self.lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            _shut(sock)
        for thread in threads:
            thread.join(timeout=5)

    def _accept_loop(self, listener: socket.socket, release: threading.Event) -> None:
        while not release.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            with self.lock:
                self.connections += 1
                self._sockets.add(sock)
            thread = threading.Thread(target=self._run_connection, args=(sock, release), daemon=True)
            with self.lock:
                self._threads.add(thread)
            thread.start()

    def _run_connection(self, sock: socket.socket, release: threading.Event) -> None:
        try:
            self.serve_connection(sock, release)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self.lock:
                self._sockets.discard(sock)
                self._threads.discard(threading.current_thread())

    def serve_connection(self, sock: socket.socket, release: threading.Event) -> None:  # pragma: no cover
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------------
# HTTP/1.1


class _Abort(Exception):
    """The connection was reset or dropped on purpose: stop handling it."""


@dataclass(frozen=True)
class Route:
    """What a request is about: its recipient, what acting on it answers, or an immediate answer (`reply`)."""

    recipient: str = ""
    act: Callable[[], Reply] | None = None
    reply: Reply | None = None


class _Connection:
    def __init__(self, standin: "HttpStandIn", release: threading.Event) -> None:
        self.standin = standin
        self.release = release


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FaultStandIn/1.0"
    server: _Connection

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        self.close_connection = True
        try:
            self.handle_one_request()
            while not self.close_connection:
                self.handle_one_request()
        except (_Abort, OSError, ValueError):
            pass

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def do_GET(self) -> None:
        self.server.standin.handle_request(self, self.server.release)

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET


class HttpStandIn(TcpStandIn):
    """Base of the HTTP stand-ins; subclasses implement `route(request)` and `error_body(status)`."""

    def __init__(self, *, fault: Fault = Fault.OK, slow_seconds: float = 3.0) -> None:
        super().__init__(fault=fault, slow_seconds=slow_seconds)
        self.received: list[Request] = []
        # Called with every request added to `received`, on the stand-in's thread, before it is answered (a test
        # notes what it needs then, e.g. its fake clock's reading).
        self.on_request: Callable[[Request], None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_connection(self, sock: socket.socket, release: threading.Event) -> None:
        _Handler(sock, (self.host, 0), _Connection(self, release))

    def route(self, request: Request) -> Route:  # pragma: no cover - overridden
        raise NotImplementedError

    def error_body(self, status: int) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def error_reply(self, status: int, *, retry_after: str | None = None) -> Reply:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return Reply(status, self.error_body(status), headers)

    def handle_request(self, handler: _Handler, release: threading.Event) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        url = urlsplit(handler.path)
        request = Request(
            method=handler.command,
            path=unquote(url.path),
            query=parse_qs(url.query),
            headers={key.lower(): value for key, value in handler.headers.items()},
            body=body,
        )
        route = self.route(request)
        if route.act is None:
            self._send(handler, route.reply or Reply(404, self.error_body(404)))
            return
        request = dataclasses.replace(request, recipient=route.recipient)
        fault = self.next_fault(route.recipient)
        with self.lock:
            self.received.append(request)
        if self.on_request is not None:
            self.on_request(request)
        if route.reply is not None:  # e.g. credentials refused: answered whatever the fault
            self._send(handler, route.reply)
            return
        self._apply(handler, release, route, fault)

    def _apply(self, handler: _Handler, release: threading.Event, route: Route, fault: Fault | Reply) -> None:
        if isinstance(fault, Reply):
            if fault.deliver:
                self.deliver(route.recipient)
            self._send(handler, fault)
            return
        reply = route.act() if fault in ACTING_FAULTS else None
        if reply is not None and reply.deliver:
            self.deliver(route.recipient)
        if fault is Fault.OK:
            self._send(handler, reply)
        elif fault is Fault.ACCEPT_THEN_TIMEOUT:
            if release.wait(self.slow_seconds):
                self._abort(handler)
            handler.close_connection = True
            self._send(handler, reply)
        elif fault is Fault.RESET_AFTER_RECEIPT:
            self._abort(handler)
        elif fault is Fault.HTTP_500:
            self._send(handler, self.error_reply(500))
        elif fault is Fault.HTTP_503:
            self._send(handler, self.error_reply(503))
        elif fault is Fault.HTTP_503_RETRY_AFTER:
            self._send(handler, self.error_reply(503, retry_after="1"))
        elif fault is Fault.HTTP_429:
            self._send(handler, self.error_reply(429, retry_after="1"))
        else:  # HANGING (or REFUSED racing with down()): never answer
            release.wait()
            self._abort(handler)

    @staticmethod
    def _abort(handler: _Handler) -> None:
        handler.rfile.close()  # drop the makefile reference so close() really closes (and resets)
        reset_connection(handler.connection)
        raise _Abort

    @staticmethod
    def _send(handler: _Handler, reply: Reply) -> None:
        data = b"" if reply.body is None else json.dumps(reply.body).encode()
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        if handler.close_connection:
            # Said, as HTTP/1.1 requires of a server that closes after this answer: the client opens a fresh
            # connection for its next request rather than writing it to one about to close.
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data)


# ---------------------------------------------------------------------------------------------------------------
# OAuth2 (service-account tokens) for FCM and Google Wallet


def write_service_account_key(
    directory: str | Path,
    *,
    token_uri: str,
    project_id: str = "standin-project",
    client_email: str = "sender@standin-project.iam.gserviceaccount.com",
) -> Path:
    """Write a service-account key file (fresh RSA key) whose token_uri is `token_uri`; return its path."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem.decode(),
        "client_email": client_email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    path = Path(directory) / f"service-account-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(info))
    return path


class OAuthStandIn(HttpStandIn):
    """An HTTP stand-in that also issues OAuth2 access tokens at POST /token and checks them on its API."""

    def __init__(self, *, require_auth: bool = True, token_expires_in: int = 3600, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.require_auth = require_auth
        self.token_expires_in = token_expires_in
        self.token_requests = 0
        self.token_grants: list[Request] = []  # every request to POST /token, as received
        self.tokens: set[str] = set()
        # When set, POST /token answers this instead of a token (e.g. Reply(400, {"error": "invalid_grant"})).
        self.token_error: Reply | None = None

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def write_key_file(self, directory: str | Path, **kwargs: Any) -> Path:
        return write_service_account_key(directory, token_uri=self.token_uri, **kwargs)

    def expire_tokens(self) -> None:
        """Every token issued so far is now refused (401)."""
        with self.lock:
            self.tokens.clear()

    def token_reply(self, request: Request) -> Reply:
        with self.lock:
            self.token_requests += 1
            self.token_grants.append(request)
            if self.token_error is not None:
                return self.token_error
            form = request.form() if request.body else {}
            if "assertion" not in form and "grant_type" not in form:
                return Reply(400, {"error": "invalid_request", "error_description": "Missing grant_type."})
            token = f"ya29.standin-{secrets.token_hex(16)}"
            self.tokens.add(token)
        return Reply(200, {"access_token": token, "expires_in": self.token_expires_in, "token_type": "Bearer"})

    def authorized(self, request: Request) -> bool:
        if not self.require_auth:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self.lock:
            return scheme.lower() == "bearer" and token in self.tokens


# ---------------------------------------------------------------------------------------------------------------
# Twilio


DEFAULT_TWILIO_SID = "AC" + "f" * 32


class TwilioStandIn(HttpStandIn):
    """POST /2010-04-01/Accounts/{sid}/Messages.json (form, basic auth); recipient = the To field."""

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_TWILIO_SID,
        auth_token: str = "standin-auth-token",
        from_number: str = "+15005550006",
        check_auth: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.check_auth = check_auth
        self.messages: list[dict[str, str]] = []  # the form of every message acted on

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def configure(self, settings: Any) -> None:
        """Point the project's Twilio settings (a pytest-django `settings`) at this stand-in."""
        settings.TWILIO_API_BASE = self.base_url
        settings.TWILIO_ACCOUNT_SID = self.account_sid
        settings.TWILIO_AUTH_TOKEN = self.auth_token
        settings.TWILIO_FROM_NUMBER = self.from_number
        settings.TWILIO_MESSAGING_SERVICE_SID = ""

    def error_body(self, status: int) -> dict[str, Any]:
        code, message = {
            400: (21211, "The 'To' number is not a valid phone number."),
            401: (20003, "Authenticate"),
            404: (20404, "The requested resource was not found"),
            429: (20429, "Too Many Requests"),
            500: (20500, "Internal Server Error"),
            503: (20503, "Service Unavailable"),
        }.get(status, (20500, "Internal Server Error"))
        return {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }

    def _authenticated(self, request: Request, sid: str) -> bool:
        if not self.check_auth:
            return True
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return scheme.lower() == "basic" and user == sid == self.account_sid and password == self.auth_token

    def route(self, request: Request) -> Route:
        parts = request.path.strip("/").split("/")
        if request.method != "POST" or len(parts) != 4 or parts[:2] != ["2010-04-01", "Accounts"]:
            return Route()
        if parts[3] != "Messages.json":
            return Route()
        form = request.form()
        recipient = form.get("To", "")
        precheck = None
        if not self._authenticated(request, parts[2]):
            precheck = Reply(401, self.error_body(401))
        elif not recipient:
            precheck = Reply(
                400, {**self.error_body(400), "code": 21604, "message": "A 'To' phone number is required."}
            )
        return Route(recipient=recipient, act=lambda: self._act(form), reply=precheck)

    def _act(self, form: dict[str, str]) -> Reply:
        sid = "SM" + uuid.uuid4().hex
        with self.lock:
            self.messages.append({**form, "Sid": sid})
        body = {
            "sid": sid,
            "status": "queued",
            "account_sid": self.account_sid,
            "to": form.get("To"),
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body", ""),
            "num_segments": "1",
            "error_code": None,
            "error_message": None,
        }
        return Reply(201, body, deliver=True)


# ---------------------------------------------------------------------------------------------------------------
# FCM HTTP v1


def fcm_error(status: int, grpc_status: str, message: str, error_code: str | None = None) -> dict[str, Any]:
    """An FCM v1 error body; `error_code` goes in the FcmError details (UNREGISTERED, QUOTA_EXCEEDED, ...)."""
    error: dict[str, Any] = {"code": status, "message": message, "status": grpc_status}
    if error_code:
        error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
    return {"error": error}


class FcmStandIn(OAuthStandIn):
    """POST /v1/projects/{project}/messages:send (JSON, Bearer token) and POST /token; recipient = message.token."""

    def __init__(self, *, project_id: str = "standin-project", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id
        self.messages: list[dict[str, Any]] = []  # the `message` of every push acted on

    @property
    def send_url(self) -> str:
        return f"{self.base_url}/v1/projects/{self.project_id}/messages:send"

    def configure(self, settings: Any, key_file: str | Path) -> None:
        """Point FCM_API_BASE and FCM_CREDENTIALS at this stand-in (key_file from write_key_file())."""
        settings.FCM_API_BASE = self.base_url
        settings.FCM_CREDENTIALS = str(key_file)
        settings.FCM_PROJECT_ID = self.project_id

    def reject_auth(self, token: str, *, error_code: str = "APNS_AUTH_ERROR", times: int = 1) -> None:
        """Answer 401 (UNAUTHENTICATED with `error_code` in the details) to the next `times` pushes to `token`."""
        body = fcm_error(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", error_code)
        self.script(token, [Reply(401, body)] * times)

    def unregistered(self, token: str, *, times: int = 1) -> None:
        """Answer 404 UNREGISTERED (a dead token) to the next `times` pushes to `token`."""
        self.script(
            token, [Reply(404, fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"))] * times
        )

    def error_body(self, status: int) -> dict[str, Any]:
        if status == 429:
            return fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages.", "QUOTA_EXCEEDED")
        if status == 401:
            return fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if status == 503:
            return fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE")
        if status == 400:
            return fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "INVALID_ARGUMENT")
        if status == 404:
            return fcm_error(404, "NOT_FOUND", "Not found.")
        return fcm_error(status, "INTERNAL", "Internal error encountered.", "INTERNAL")

    def route(self, request: Request) -> Route:
        if request.method == "POST" and request.path == "/token":
            return Route(reply=self.token_reply(request))
        parts = request.path.strip("/").split("/")
        if request.method != "POST" or len(parts) != 4 or parts[:2] != ["v1", "projects"]:
            return Route()
        if parts[3] != "messages:send":
            return Route()
        project = parts[2]
        try:
            message = request.json()["message"]
            token = message["token"]
        except (ValueError, KeyError, TypeError):
            message, token = None, ""
        precheck = None
        if not self.authorized(request):
            precheck = Reply(401, self.error_body(401))
        elif not token:
            precheck = Reply(400, self.error_body(400))
        return Route(recipient=token, act=lambda: self._act(project, message), reply=precheck)

    def _act(self, project: str, message: dict[str, Any]) -> Reply:
        with self.lock:
            self.messages.append(message)
            number = len(self.messages)
        return Reply(200, {"name": f"projects/{project}/messages/{number}"}, deliver=True)


# ---------------------------------------------------------------------------------------------------------------
# Google Wallet


def google_error(status: int, grpc_status: str, reason: str, message: str) -> dict[str, Any]:
    """A Google API error body (the legacy `errors` list included, as the Wallet API answers)."""
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": grpc_status,
        }
    }


QUOTA_MESSAGE = (
    "Quota exceeded for quota metric 'Notifying messages per object' and limit 'Notifying messages per object per "
    "day' of service 'walletobjects.googleapis.com'."
)


class GoogleWalletStandIn(OAuthStandIn):
    """Loyalty objects: POST .../loyaltyObject/{id}/addMessage, GET and PATCH .../loyaltyObject/{id}, POST /token.

    The recipient of every object call is the object id; only addMessage counts deliveries. Objects are created on
    their first call and keep their `messages` list. A notifying message (messageType TEXT_AND_NOTIFY) is refused
    with 403 quotaExceeded when its object is in `quota_exceeded`, or when `notify_limit` is set and the object
    already received that many notifying messages.
    """

    PREFIX = "/walletobjects/v1/loyaltyObject/"

    def __init__(self, *, notify_limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notify_limit = notify_limit
        self.quota_exceeded: set[str] = set()
        self.objects: dict[str, dict[str, Any]] = {}
        self.notified: Counter[str] = Counter()

    def configure(self, settings: Any, key_file: str | Path) -> None:
        """Point GOOGLE_WALLET_API_BASE and GOOGLE_WALLET_CREDENTIALS at this stand-in."""
        settings.GOOGLE_WALLET_API_BASE = self.base_url
        settings.GOOGLE_WALLET_CREDENTIALS = str(key_file)

    def exceed_quota(self, object_id: str, exceeded: bool = True) -> None:
        """Refuse (403 quotaExceeded) notifying messages for `object_id` until called with exceeded=False."""
        with self.lock:
            (self.quota_exceeded.add if exceeded else self.quota_exceeded.discard)(object_id)

    def messages(self, object_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(message) for message in self.objects.get(object_id, {}).get("messages", [])]

    def error_body(self, status: int) -> dict[str, Any]:
        return {
            400: google_error(400, "INVALID_ARGUMENT", "invalid", "Invalid request."),
            401: google_error(401, "UNAUTHENTICATED", "authError", "Request had invalid authentication credentials."),
            403: google_error(403, "PERMISSION_DENIED", "quotaExceeded", QUOTA_MESSAGE),
            404: google_error(404, "NOT_FOUND", "resourceNotFound", "Requested entity was not found."),
            429: google_error(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", "Too many requests."),
            503: google_error(503, "UNAVAILABLE", "backendError", "The service is currently unavailable."),
        }.get(status, google_error(status, "INTERNAL", "backendError", "Internal error encountered."))

    def route(self, request: Request) -> Route:
        if request.method == "POST" and request.path == "/token":
            return Route(reply=self.token_reply(request))
        if not request.path.startswith(self.PREFIX):
            return Route()
        rest = request.path[len(self.PREFIX) :]
        object_id, _, action = rest.partition("/")
        if not object_id:
            return Route()
        if action == "addMessage" and request.method == "POST":
            try:
                message = request.json()["message"]
                valid = isinstance(message, dict)
            except (ValueError, KeyError, TypeError):
                message, valid = None, False
            act = lambda: self._add_message(object_id, message)  # noqa: E731
        elif action == "" and request.method == "GET":
            valid, act = True, lambda: self._get(object_id)
        elif action == "" and request.method == "PATCH":
            try:
                patch = request.json()
                valid = isinstance(patch, dict)
            except ValueError:
                patch, valid = None, False
            act = lambda: self._patch(object_id, patch)  # noqa: E731
        else:
            return Route()
        precheck = None
        if not self.authorized(request):
            precheck = Reply(401, self.error_body(401))
        elif not valid:
            precheck = Reply(400, self.error_body(400))
        return Route(recipient=object_id, act=act, reply=precheck)

    def _object(self, object_id: str) -> dict[str, Any]:
        return self.objects.setdefault(
            object_id,
            {"kind": "walletobjects#loyaltyObject", "id": object_id, "state": "ACTIVE", "messages": []},
        )

    def _add_message(self, object_id: str, message: dict[str, Any]) -> Reply:
        with self.lock:
            notify = message.get("messageType") == "TEXT_AND_NOTIFY"
            over_limit = self.notify_limit is not None and self.notified[object_id] >= self.notify_limit
            if notify and (object_id in self.quota_exceeded or over_limit):
                return Reply(403, self.error_body(403))
            obj = self._object(object_id)
            obj["messages"].append(dict(message))
            if notify:
                self.notified[object_id] += 1
            return Reply(200, {"resource": json.loads(json.dumps(obj))}, deliver=True)

    def _get(self, object_id: str) -> Reply:
        with self.lock:
            return Reply(200, json.loads(json.dumps(self._object(object_id))))

    def _patch(self, object_id: str, patch: dict[str, Any]) -> Reply:
        with self.lock:
            obj = self._object(object_id)
            obj.update({key: value for key, value in patch.items() if key != "id"})
            obj["messages"] = [dict(message) for message in obj.get("messages") or []]
            return Reply(200, json.loads(json.dumps(obj)))
