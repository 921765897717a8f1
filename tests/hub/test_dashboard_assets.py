"""The dashboard's page and assets, in process: what is served, with which headers, and
that every asset ships in the package (pyproject package data)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub.api.common import errors
from hub.dashboard import pages

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "hub" / "dashboard" / "static"


def app() -> web.Application:
    application = web.Application(middlewares=[errors])
    pages.install(application, '/api/v1"><script>')
    return application


async def test_the_page_and_its_assets() -> None:
    async with TestClient(TestServer(app())) as client:
        answer = await client.get("/")
        page = await answer.text()
        assert answer.status == 200 and answer.content_type == "text/html"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        # the API prefix goes into the page as an attribute's text, never as markup
        assert 'content="/api/v1&quot;&gt;&lt;script&gt;"' in page and "<script>" not in page
        for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
            answer = await client.get(f"/static/{name}")
            assert answer.status == 200 and answer.content_type == kind
            assert await answer.read() == (STATIC / name).read_bytes()
        for path in ("/static/index.html", "/static/missing.js", "/static/..%2fpages.py",
                     "/static/APP.JS", "/static/a%00.js"):
            answer = await client.get(path)
            assert answer.status == 404, path
            assert (await answer.json())["error"]["code"] == "not_found"


def test_every_asset_ships_in_the_package() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["hub.dashboard"]
    for path in STATIC.iterdir():
        relative = str(path.relative_to(STATIC.parent))
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
    script = (STATIC / "app.js").read_text()
    assert "innerHTML" not in script and "eval(" not in script  # data goes in as text
