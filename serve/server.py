"""Running the app under uvicorn on a socket bound first, so port 0 (any free port) works and the
address is known before the first request: in the foreground (the CLI) or in a thread (tests,
benchmarks, a notebook).

    with BackgroundServer(app) as server:
        httpx.get(server.url + "/api/images")
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any, Optional

import uvicorn

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); OSError when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def address(sock: socket.socket) -> str:
    """http://host:port of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(app: Any) -> uvicorn.Server:
    # No access log: a click is one line of noise; errors still go to uvicorn's error log.
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))


def serve_forever(app: Any, sock: socket.socket) -> None:
    """Serves `app` on `sock` until interrupted (Ctrl-C)."""
    _server(app).run(sockets=[sock])


class BackgroundServer:
    """`app` served on `sock` (default: a free loopback port) in a daemon thread while the `with`
    block runs; `url` is its address."""

    def __init__(self, app: Any, sock: Optional[socket.socket] = None) -> None:
        self.app = app
        self.sock = sock
        self.url = ""
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "BackgroundServer":
        sock = self.sock if self.sock is not None else bind(LOOPBACK, 0)
        self.url = address(sock)
        self._server = _server(self.app)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="robustsam-serve")
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the server on {self.url} stopped while starting")
            self._thread.join(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)
