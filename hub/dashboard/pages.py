"""The dashboard's page at ``/`` and its assets at ``/static/<name>``, outside the API.

The assets ship in the package (``hub/dashboard/static``, package data), plain HTML, CSS
and JavaScript with no build step and nothing fetched from elsewhere. Only the files of
that folder are served, by exact name: a name that is not one of them (``../hub/config.py``
included) is a 404, and nothing outside the folder is ever opened. Every answer carries a
Content-Security-Policy that allows scripts and styles from the hub alone (no inline
script), no framing, and ``nosniff``.
"""

from __future__ import annotations

import html
import mimetypes
import re
from importlib import resources

from aiohttp import web

from hub.errors import NotFound

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
          ".svg": "image/svg+xml", ".txt": "text/plain"}


class Assets:
    """The files of ``hub/dashboard/static`` by name, read once at the first request."""

    def __init__(self, api_prefix: str) -> None:
        self.api_prefix = api_prefix
        self._files: dict[str, bytes] | None = None

    def files(self) -> dict[str, bytes]:
        if self._files is None:
            folder = resources.files("hub.dashboard") / "static"
            self._files = {item.name: item.read_bytes() for item in folder.iterdir()
                           if item.is_file() and _NAME.match(item.name)}
        return self._files

    def index(self) -> bytes:
        page = self.files()["index.html"].decode()
        return page.replace("{{api_prefix}}", html.escape(self.api_prefix, quote=True)).encode()


ASSETS: web.AppKey[Assets] = web.AppKey("dashboard_assets", Assets)


def _answer(body: bytes, content_type: str) -> web.Response:
    response = web.Response(body=body, headers=HEADERS)
    response.content_type = content_type
    if content_type.startswith("text/") or content_type.endswith("+xml"):
        response.charset = "utf-8"
    return response


async def index(request: web.Request) -> web.Response:
    return _answer(request.app[ASSETS].index(), "text/html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    files = request.app[ASSETS].files()
    if not _NAME.match(name) or name not in files or name == "index.html":
        raise NotFound("not_found", f"no dashboard file '{name[:100]}'")
    suffix = "." + name.rpartition(".")[2]
    kind = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return _answer(files[name], kind)


def install(app: web.Application, api_prefix: str) -> None:
    """``/`` and ``/static/<name>`` on ``app`` (GET and HEAD)."""
    app[ASSETS] = Assets(api_prefix)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
