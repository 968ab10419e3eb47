"""A webhook receiver on 127.0.0.1: a real HTTP server in a thread that verifies every delivery with the reference
library (standardwebhooks.Webhook(secret).verify) and counts, on its own side, what it accepted per webhook-id.

It can be told to answer the next N requests with a status (500, 410...) or to hang past the client's timeout."""

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


class _Server(ThreadingHTTPServer):
    # Many deliveries connect at once: the default backlog of 5 would drop connections.
    request_queue_size = 256


class Receiver:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}  # path -> secret
        self.accepted: Counter[str] = Counter()  # webhook-id -> 2xx answers given
        self.requests: list[dict] = []  # every request: path, headers, body, verified, answered
        self.bad_signatures = 0
        self.failures: list[int | str] = []  # what to do with the next requests: a status, or "hang"
        self.hang_seconds = 2.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver._handle(self, body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def register(self, path: str, secret: str) -> None:
        self.secrets[path] = secret

    def fail_next(self, *actions: int | str) -> None:
        with self._lock:
            self.failures.extend(actions)

    def bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests if r["answered"] == 200]

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        secret = self.secrets.get(handler.path)
        try:
            Webhook(secret).verify(body, headers) if secret else None
            verified = secret is not None
        except WebhookVerificationError:
            verified = False
        with self._lock:
            action = self.failures.pop(0) if self.failures else 200
            if not verified:
                self.bad_signatures += 1
                action = 400 if action == 200 else action
            record = {"path": handler.path, "headers": headers, "body": body, "verified": verified}
            record["answered"] = action
            self.requests.append(record)
            if action == 200:
                self.accepted[headers.get("webhook-id", "")] += 1
        if action == "hang":
            time.sleep(self.hang_seconds)
            return
        handler.send_response(int(action))
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")
