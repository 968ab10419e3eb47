"""What a failed request proves about the provider (engagement_site.curl's `written`), checked against real
sockets."""

import socket
import threading

import pytest

from engagement_site.curl import HttpRequest, TransferError, perform


@pytest.fixture
def plain_http_server():
    """A server that answers every connection in plain HTTP after reading the request."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def failure(url: str, timeout: float = 2) -> TransferError:
    with pytest.raises(TransferError) as excinfo:
        perform(HttpRequest("POST", url, {}, b"x"), timeout=timeout)
    return excinfo.value


def test_a_refused_connection_was_not_written():
    exc = failure(f"http://127.0.0.1:{closed_port()}/send")
    assert (exc.kind, exc.written) == ("connect error", False)


def test_a_failed_tls_handshake_was_not_written(plain_http_server):
    exc = failure(f"https://127.0.0.1:{plain_http_server}/send")
    assert (exc.kind, exc.written) == ("connect error", False)


def test_a_timeout_during_the_tls_handshake_was_not_written():
    """The peer accepts the connection and never speaks TLS: no byte of the request left this host."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        exc = failure(f"https://127.0.0.1:{silent.getsockname()[1]}/send", timeout=0.3)
    assert (exc.kind, exc.written) == ("timeout", False)


def test_a_server_that_takes_the_request_and_never_answers_leaves_it_unknown():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        exc = failure(f"http://127.0.0.1:{server.getsockname()[1]}/send", timeout=0.3)
        assert (exc.kind, exc.written) == ("timeout", True)
    finally:
        server.close()


def test_an_unsupported_scheme_is_our_configuration_not_the_provider():
    exc = failure("htp://127.0.0.1/send")
    assert (exc.configuration, exc.written) == (True, False)
