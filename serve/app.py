"""The ASGI app: the page (serve/static, no build step, nothing fetched from elsewhere), the API, and
the rules every request passes: the token, the Host header on loopback, JSON errors.

    app = create_app(bench, checkpoint="robustsam_vit_b.pth", replay={"robust": "robustsam segment photos"})
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Awaitable, Callable, Mapping, Optional, Sequence

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from core.errors import InputError

from .api import make_router
from .images import ImageNotFound, ImageTooLarge
from .workbench import SaveRefused, Workbench

STATIC_DIR = Path(__file__).parent / "static"
# Host headers accepted when the server listens on loopback: a page on another site that rebinds its
# name to 127.0.0.1 sends its own name and is refused.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# What needs no token: the page itself (it holds no data; it reads the token from the address).
PUBLIC_PATHS = ("/", "/favicon.ico")
PUBLIC_PREFIX = "/static/"


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure is `{"error": message}`: 4xx for the client's mistakes, 500 without a traceback."""

    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, _validation_message(exc))

    async def http(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    async def bad_input(request: Request, exc: Exception) -> JSONResponse:
        return error(400, str(exc))

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return error(404, str(exc.args[0]) if exc.args else "not found")

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        return error(409, str(exc))

    async def too_large(request: Request, exc: Exception) -> JSONResponse:
        return error(413, str(exc))

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error ({type(exc).__name__})")

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(InputError, bad_input)
    app.add_exception_handler(ImageNotFound, not_found)
    app.add_exception_handler(SaveRefused, refused)
    app.add_exception_handler(ImageTooLarge, too_large)
    app.add_exception_handler(Exception, internal)


def _token_check(token: str) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    expected = f"Bearer {token}".encode()

    async def check(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX):
            return await call_next(request)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return error(401, "missing or wrong token: send the header 'Authorization: Bearer TOKEN'")
        return await call_next(request)

    return check


def _host_name(host: str) -> str:
    """A Host header without its port: 'localhost:8000' -> 'localhost', '[::1]:8000' -> '[::1]'."""
    return host[: host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]


def _host_check(allowed: Sequence[str]) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def check(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        host = request.headers.get("host", "")
        if _host_name(host) not in allowed:
            return error(400, f"host {host!r} refused: this server answers on {', '.join(allowed)}")
        return await call_next(request)

    return check


def create_app(
    bench: Workbench,
    *,
    checkpoint: str,
    replay: Mapping[str, str],
    token: Optional[str] = None,
    allowed_hosts: Optional[Sequence[str]] = LOOPBACK_HOSTS,
) -> FastAPI:
    """The app on `bench`. `token`: required on every API call (header `Authorization: Bearer
    TOKEN`); `allowed_hosts`: the Host headers accepted (None: any, for a server on a public address,
    which then needs a token). `replay[path]`: the segment command that rewrites a save on `path`."""
    app = FastAPI(title="robustsam serve", version="1", docs_url=None, redoc_url=None,
                  description="Prompt RobustSAM, SAM and GleSAM on a folder of images; save prompts `robustsam segment` replays.")
    _add_error_handlers(app)
    if token is not None:
        app.middleware("http")(_token_check(token))
    if allowed_hosts is not None:
        app.middleware("http")(_host_check(allowed_hosts))
    app.include_router(make_router(bench, checkpoint, dict(replay)))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    return app
