"""keepalived's health check (roles/keepalived/files/keepalived-http-check).

Real sockets on loopback: a server that answers, whatever its status, passes;
one that refuses, hangs, hangs up or answers something that is not HTTP fails.
The program runs as keepalived runs it, by its path, and its exit code counts.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PROGRAM = Path(__file__).resolve().parents[2] / "roles/keepalived/files/keepalived-http-check"


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROGRAM), *args], capture_output=True, text=True, timeout=20
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200
    hosts: list[str] = []

    def do_GET(self) -> None:
        type(self).hosts.append(self.headers["Host"])
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[http.server.ThreadingHTTPServer, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"hosts": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, handler
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def raw_listener() -> Iterator[socket.socket]:
    """A listening socket nobody serves: connections are accepted by the kernel, then nothing."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("status", [200, 301, 404, 502])
def test_any_http_answer_passes_and_the_host_header_is_sent(server, status):
    httpd, handler = server
    handler.status = status
    result = check(url(httpd.server_port), "--host", "chat.example.com")
    assert result.returncode == 0, result.stderr
    assert handler.hosts == ["chat.example.com"]


def test_a_refused_connection_fails():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert check(url(port)).returncode == 1


def test_a_server_that_never_answers_fails_within_the_timeout(raw_listener):
    started = time.monotonic()
    result = check(url(raw_listener.getsockname()[1]), "--timeout", "1")
    assert result.returncode == 1
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("reply", [b"", b"SSH-2.0-OpenSSH_9.2\r\n"])
def test_a_hang_up_or_an_answer_that_is_not_http_fails(raw_listener, reply):
    def serve_once() -> None:
        conn, _ = raw_listener.accept()
        conn.recv(1024)
        conn.sendall(reply)
        conn.close()

    threading.Thread(target=serve_once, daemon=True).start()
    assert check(url(raw_listener.getsockname()[1])).returncode == 1


def test_a_url_that_is_not_http_is_refused():
    result = check("https://127.0.0.1/")
    assert result.returncode != 0
    assert "only http://" in result.stderr
