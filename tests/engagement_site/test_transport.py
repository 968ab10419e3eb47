"""What a failed request proves about the provider, checked against real sockets."""

import socket
import threading

import pytest
import requests

from engagement_site.transport import request_not_written


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


def failure(url: str, timeout: float = 2) -> requests.RequestException:
    with pytest.raises(requests.RequestException) as excinfo:
        requests.post(url, data=b"x", timeout=timeout)
    return excinfo.value


def test_a_refused_connection_was_not_written():
    assert request_not_written(failure(f"http://127.0.0.1:{closed_port()}/send"))


def test_a_failed_tls_handshake_was_not_written(plain_http_server):
    exc = failure(f"https://127.0.0.1:{plain_http_server}/send")
    assert isinstance(exc, requests.exceptions.SSLError)
    assert request_not_written(exc)


def test_a_server_that_takes_the_request_and_never_answers_leaves_it_unknown():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        exc = failure(f"http://127.0.0.1:{server.getsockname()[1]}/send", timeout=0.3)
        assert isinstance(exc, requests.ReadTimeout)
        assert not request_not_written(exc)
    finally:
        server.close()
