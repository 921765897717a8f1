"""Files of a share, through the agent that serves it: ``POST /files/<op>`` (``ls``,
``stat``, ``mkdir``, ``rename``, ``mv``, ``delete``) and ``POST /files/changes``
(``hub/files.py``)."""

from __future__ import annotations

from aiohttp import web

from hub.api.common import Handler, Route, context, json_response, read_json
from hub.files import changes, file_op
from protocol.files import Changed, Entry, FilesRequest, Listing
from protocol.tickets import FileOp

ERRORS = (400, 401, 403, 404, 409, 413, 422, 502, 503)


def _operation(op: FileOp) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        ctx = await context(request)
        return json_response(await file_op(ctx, op, await read_json(request)))

    return handle


async def file_changes(request: web.Request) -> web.Response:
    ctx = await context(request)
    return json_response(await changes(ctx, await read_json(request)))


ROUTES = [
    Route("POST", "/files/ls", _operation("ls"), "List a folder of a share (or one file): "
          "name, path, type, size, mtime; paged with limit, skip and the answer's next as "
          "cursor; recursive lists below its folders too (read share)",
          body=FilesRequest, response=Listing, errors=ERRORS),
    Route("POST", "/files/stat", _operation("stat"), "One file or folder of a share: its "
          "entry; a folder's size is what its files hold (read share)",
          body=FilesRequest, response=Entry, errors=ERRORS),
    Route("POST", "/files/mkdir", _operation("mkdir"), "Make a folder of a share, and those "
          "above it that are missing (write share)", body=FilesRequest, response=Changed,
          errors=ERRORS),
    Route("POST", "/files/rename", _operation("rename"), "Rename a file or folder of a share "
          "in its folder: to is the new name (write share)", body=FilesRequest,
          response=Changed, errors=ERRORS),
    Route("POST", "/files/mv", _operation("mv"), "Move a file or folder within its share: to "
          "is the new path, or a folder to move it into (write share)", body=FilesRequest,
          response=Changed, errors=ERRORS),
    Route("POST", "/files/delete", _operation("delete"), "Delete a file, or an empty folder; "
          "a folder with what it holds only with recursive (write share)",
          body=FilesRequest, response=Changed, errors=ERRORS),
    Route("POST", "/files/changes", file_changes, "The changes made through the hub to a "
          "share's files, newest first, with who made them (read share)",
          body=FilesRequest, response="object", errors=(400, 401, 403, 413, 422)),
]
