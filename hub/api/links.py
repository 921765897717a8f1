"""Download links: ``POST /link`` makes one for a file of a share (``hub/links.py``)."""

from __future__ import annotations

from aiohttp import web

from hub.api.common import Route, context, json_response, read_json
from hub.links import make_link
from protocol.links import Link, LinkRequest


async def link(request: web.Request) -> web.Response:
    ctx = await context(request)
    return json_response(await make_link(ctx, await read_json(request)), 201)


ROUTES = [
    Route("POST", "/link", link, "Make a download link to a file of a share, valid for a "
          "time: a URL any HTTP client can fetch (with ranges), no agent needed",
          body=LinkRequest, response=Link, status=201, errors=(400, 401, 403, 413, 422)),
]
