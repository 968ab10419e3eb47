"""libcurl never sends a request again by itself unless the pool allows it (requests a provider may receive twice):
a stream the server refused (REFUSED_STREAM, or above the last stream a GOAWAY says it processed) is reported as
possibly written. Against a real HTTP/2 server over TLS (ALPN h2) that counts what it processed, since libcurl
cannot be mocked (the HTTP/1.1 case, a kept connection lost before the answer, is in test_http.py)."""

import socket
import ssl
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import pycurl
import pytest

from benchmarks.latency_standins import make_certs
from engagement_site.curl import Answer, CurlPool, HttpRequest, TransferError

REFUSE = "refuse"
GOAWAY = "goaway"


class RefusingServer:
    """Answers 200 to every request, except on the first connection from its second stream (3) on: the first such
    request it refuses (`REFUSE`: RST_STREAM REFUSED_STREAM), or it sends a GOAWAY whose last processed stream is the
    one before, so every later stream of that connection is left unprocessed (`GOAWAY`).
    `processed` lists the requests it acted on (answered), `refused` the ones it turned away."""

    def __init__(self, certs, how: str) -> None:
        self.how = how
        self.processed: list[bytes] = []
        self.refused: list[bytes] = []
        self.connections = 0
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certs.server_cert_file, certs.server_key_file)
        self.context.set_alpn_protocols(["h2"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}/send"
        self.lock = threading.Lock()

    def __enter__(self) -> "RefusingServer":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self._serve, args=(raw, number), daemon=True).start()

    def _serve(self, raw: socket.socket, number: int) -> None:
        with self.context.wrap_socket(raw, server_side=True) as tls:
            connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            connection.initiate_connection()
            tls.sendall(connection.data_to_send())
            bodies: dict[int, bytes] = {}
            turned_away = False
            while data := tls.recv(65535):
                try:
                    events = connection.receive_data(data)
                except h2.exceptions.ProtocolError:
                    continue  # frames after our GOAWAY, which h2 refuses: unprocessed, until the client hangs up
                for event in events:
                    if isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
                        connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        body = bodies.pop(event.stream_id, b"")
                        if number == 1 and event.stream_id >= 3 and (self.how == GOAWAY or not turned_away):
                            turned_away = True
                            self.refused.append(body)
                            if self.how == REFUSE:
                                connection.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                            elif connection.state_machine.state != h2.connection.ConnectionState.CLOSED:
                                connection.close_connection(last_stream_id=1)
                        else:
                            self.processed.append(body)
                            connection.send_headers(event.stream_id, [(":status", "200"), ("content-length", "2")])
                            connection.send_data(event.stream_id, b"{}", end_stream=True)
                tls.sendall(connection.data_to_send())


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def send(pool: CurlPool, url: str, numbers: range) -> dict[int, Answer | TransferError]:
    keys = {pool.submit(HttpRequest.json("POST", url, {"n": n})): n for n in numbers}
    outcomes: dict[int, Answer | TransferError] = {}
    while len(outcomes) < len(keys):
        for key, outcome in pool.wait(1.0):
            outcomes[keys[key]] = outcome
    return outcomes


def open_pool(certs, *, resend_unanswered: bool) -> CurlPool:
    return CurlPool(
        http2=True, max_connections=2, timeout=5, ca_file=str(certs.ca_file), resend_unanswered=resend_unanswered
    )


@pytest.mark.parametrize("how", [REFUSE, GOAWAY])
def test_a_stream_the_server_did_not_process_is_reported_as_possibly_written_never_sent_again(certs, how):
    pool = open_pool(certs, resend_unanswered=False)
    with RefusingServer(certs, how) as server:
        first = send(pool, server.url, range(1))
        outcomes = send(pool, server.url, range(1, 4))
    pool.close()
    assert first[0].status_code == 200
    failed = {n: outcome for n, outcome in outcomes.items() if isinstance(outcome, TransferError)}
    assert failed and all(outcome.code == pycurl.E_SEND_FAIL_REWIND and outcome.written for outcome in failed.values())
    answered = sorted(b'{"n":%d}' % n for n in {0, *outcomes} - set(failed))
    assert sorted(server.processed) == answered
    assert server.connections == 1


@pytest.mark.parametrize("how", [REFUSE, GOAWAY])
def test_a_pool_that_may_resend_has_libcurl_send_a_refused_stream_again(certs, how):
    pool = open_pool(certs, resend_unanswered=True)
    with RefusingServer(certs, how) as server:
        outcomes = send(pool, server.url, range(4))
    pool.close()
    assert [outcome.status_code for outcome in outcomes.values()] == [200] * 4
    assert sorted(server.processed) == [b'{"n":%d}' % n for n in range(4)]
    assert server.refused
    assert server.connections == 2
