"""``Session``: the Python client of the hub, with the call shapes of the reference.

::

    from hub import Session
    session = Session("http://127.0.0.1:7700", username="root", password="…")
    session.find("Client where type=1")
    session.update("Client", client_id, {"status": "disabled"})

A hub may be named instead, from the servers database (``ferry servers``):
``Session(server="prod", username=…, password=…)``; the server's status there
follows what the session sees, and error messages say what it suggests.

Credentials may also come from the environment: ``FERRY_HUB`` (URL),
``FERRY_USERNAME`` and ``FERRY_PASSWORD``, or ``FERRY_API_KEY``. Requests
are retried on 429, 5xx and connection errors (honouring ``Retry-After``);
an expired token is renewed once; every other error raises ``ApiError``
with the hub's message.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from core.errors import ApiError, HubError, NotLoggedIn
from protocol import API_PREFIX
from protocol.http import parse_retry_after
from protocol.links import DEFAULT_EXPIRES, parse_expires

DEFAULT_URL = "http://127.0.0.1:7700"
PAGE = 1000  # records asked for a page when a limit is given (the hub's default page)


class _Retry(HubError):
    """A failure worth another try. ``processed``: the hub may have acted on the request.
    Never leaves the session: when the tries are spent it becomes a plain ``HubError``."""

    def __init__(self, reason: str, retry_after: float | None = None, *,
                 processed: bool = True) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.processed = processed


# POSTs that change nothing; any other POST creates something and is repeated only
# when the hub surely did not act on it (refused connection, 429)
_SAFE_POSTS = ("/find", "/token", "/link",  # a link is a signed ticket: nothing is stored
               "/files/ls", "/files/stat", "/files/changes")


def _wait(state: Any) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _Retry) and exc.retry_after is not None:
        return exc.retry_after
    return float(wait_random_exponential(multiplier=0.3, max=5)(state))


class Session:
    def __init__(self, url: str | None = None, username: str | None = None,
                 password: str | None = None, api_key: str | None = None, *,
                 server: str | None = None, timeout: float = 30.0, attempts: int = 4) -> None:
        self.server = server
        self._servers: Any = None  # the servers database, for a named hub
        if server is not None:
            if url is not None:
                raise HubError("give the hub's url or its server name, not both")
            url = self._named(server)
        self.url = (url or os.environ.get("FERRY_HUB") or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise HubError(f"hub URL must start with http:// or https://, got {self.url!r}")
        self.username = username or os.environ.get("FERRY_USERNAME")
        self._password = password or os.environ.get("FERRY_PASSWORD")
        self._api_key = api_key or (None if username else os.environ.get("FERRY_API_KEY"))
        self.timeout = timeout
        self.attempts = attempts
        self._token: str | None = None
        self.user: dict[str, Any] = {}
        if not self._api_key and not (self.username and self._password is not None):
            stored = self._stored_token()
            if stored is None:
                raise NotLoggedIn("no credentials: give username and password, or api_key "
                               "(or set FERRY_USERNAME/FERRY_PASSWORD or FERRY_API_KEY)"
                               + (f"; no token is stored for server '{self.server}'"
                                  if self.server else ""))
            self._token = stored  # the last session's with this server: no log-in needed
            return
        self.login()

    def _named(self, server: str) -> str:
        """The URL of a server of the user's servers database that can serve a session."""
        # only a session by server name needs the servers database (and its keyring)
        from servers import ServersDB, ServersError, require  # noqa: PLC0415 - see above

        self._servers = ServersDB()
        try:
            found = self._servers.get(server)
            for request in ("token", "find", "get", "create", "update", "delete"):
                require(found, request)
        except ServersError as exc:
            raise HubError(str(exc)) from None
        self.server = found.name
        return str(found.application.url)

    def _observe(self, ok: bool) -> None:
        if self._servers is not None:
            with contextlib.suppress(Exception):  # a courtesy: never the caller's failure
                self._servers.observe(self.server, ok)

    # -- transport
    def _send(self, method: str, path: str, body: Any, token: str | None,
              text: bool = False) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{API_PREFIX}{path}", data=data,
                                         method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                raw = resp.read()
            self._observe(True)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            self._observe(exc.code < 500)  # an answer, even an error, is the hub's
            if exc.code == 429 or exc.code >= 500:
                after = parse_retry_after(exc.headers.get("Retry-After"), cap=60.0)
                raise _Retry(f"hub answered {exc.code}{_said(raw)}", after,
                             processed=exc.code != 429) from None
            try:
                detail = json.loads(raw)["error"]
                raise ApiError(exc.code, detail["code"], detail["message"],
                               {k: v for k, v in detail.items() if k not in ("code", "message")}
                               ) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(exc.code, "http_error", raw[:300].decode("utf-8", "replace")) \
                    from None
        except (urllib.error.URLError, OSError) as exc:
            self._observe(False)
            reason = getattr(exc, "reason", exc)
            raise _Retry(f"cannot reach hub at {self.url}: {reason}",
                         processed=not isinstance(reason, ConnectionRefusedError)) from None
        if text:
            return raw.decode("utf-8", "replace")
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise _Retry("hub sent an answer that is not JSON") from None

    def _call(self, method: str, path: str, body: Any = None, *, auth: bool = True,
              text: bool = False) -> Any:
        repeatable = method != "POST" or path in _SAFE_POSTS

        def worth_retrying(exc: BaseException) -> bool:
            return isinstance(exc, _Retry) and (repeatable or not exc.processed)

        try:
            for attempt in Retrying(retry=retry_if_exception(worth_retrying),
                                    wait=_wait, stop=stop_after_attempt(self.attempts),
                                    reraise=True):
                with attempt:
                    try:
                        return self._send(method, path, body, self._token if auth else None,
                                          text)
                    except ApiError as exc:
                        if not auth or exc.status != 401 or exc.code == "bad_credentials":
                            raise
                        self.login()  # token expired or hub secret changed: once more
                        return self._send(method, path, body, self._token, text)
        except _Retry as exc:
            if not repeatable and exc.processed:
                raise HubError(self._problem(f"{exc}; not repeated, since the hub may have "
                                             "done it: check before trying again")) from None
            raise HubError(self._problem(f"{exc} (gave up after {self.attempts} attempts)")
                           ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _problem(self, error: str) -> str:
        """For a named hub, the message its status in the servers database suggests."""
        if self._servers is None:
            return error
        try:
            return str(self._servers.problem(self.server, error))
        except Exception:
            return error

    def version(self) -> dict[str, Any]:
        """The hub's version and protocol; for a named hub, from the servers database's
        cache while it is less than a day old."""
        if self._servers is None:
            return self._call("GET", "/version", auth=False)  # type: ignore[no-any-return]
        return self._servers.cached(  # type: ignore[no-any-return]
            self.server, "version", lambda: self._call("GET", "/version", auth=False))

    def _stored_token(self) -> str | None:
        if self._servers is None:
            return None
        try:
            return self._servers.token(self.server)  # type: ignore[no-any-return]
        except Exception:
            return None

    def collaborations(self) -> list[dict[str, Any]]:
        """The collaborations the caller sees (slow to change: for a named hub, from the
        servers database's cache while it is less than a day old)."""
        return self._slow("collaborations", "Collaboration")

    def shares(self) -> list[dict[str, Any]]:
        """The shares the caller sees (cached like ``collaborations``)."""
        return self._slow("shares", "Share")

    def _slow(self, key: str, entity: str) -> list[dict[str, Any]]:
        if self._servers is None:
            return self.find(entity)
        return self._servers.cached(  # type: ignore[no-any-return]
            self.server, key, lambda: self.find(entity))

    def login(self) -> None:
        """Log in; for a named hub the token is kept in the servers database's secret
        store (the OS keyring, or an owner-only file), for the next session."""
        if not self._api_key and not (self.username and self._password is not None):
            raise NotLoggedIn(f"the token stored for server '{self.server}' was refused "
                           "(expired, or its password changed): log in with username and "
                           "password")
        body: dict[str, Any] = ({"api_key": self._api_key} if self._api_key else
                                {"username": self.username, "password": self._password})
        answer = self._call("POST", "/token", body, auth=False)
        self._token = answer["token"]
        self.user = answer.get("user", {})
        if self._servers is not None:
            with contextlib.suppress(Exception):
                self._servers.set_token(self.server, self._token)

    # -- the reference's calls
    def find(self, query: str, finished: bool = False, archived: bool = False,
             limit: int | None = None, skip: int = 0, *, offset: int | None = None,
             attributes: Iterable[str] = (), page_size: int | None = None,
             inactive: bool = False) -> list[dict[str, Any]]:
        """Every record ``query`` matches (at most ``limit``, after ``skip``), fetched page
        by page through the hub's cursor, so no one answer is large. ``attributes``: the
        fields to return (each record then holds only those and ``id``); the large fields
        lists leave out otherwise (a task's ``log_tail``, ``input``, ``result``) come only
        when named. ``offset`` is the older name of ``skip``. ``inactive``: the deleted
        (``delete_one``) jobs instead of the others."""
        return list(self.iter_find(query, finished, archived, limit, skip, offset=offset,
                                   attributes=attributes, page_size=page_size,
                                   inactive=inactive))

    def iter_find(self, query: str, finished: bool = False, archived: bool = False,
                  limit: int | None = None, skip: int = 0, *, offset: int | None = None,
                  attributes: Iterable[str] = (), page_size: int | None = None,
                  inactive: bool = False) -> Iterator[dict[str, Any]]:
        """The records of ``find``, one at a time, asking for the next page only when the
        one before is used up: memory stays one page however many records match.
        ``page_size``: records per request (default: the hub's ``find_page``)."""
        body: dict[str, Any] = {"query": query, "finished": finished, "archived": archived}
        if attributes:
            body["attributes"] = _names(attributes)
        if inactive:  # only when asked: a hub before issue 19 refuses the name
            body["inactive"] = True

        def page(params: dict[str, Any]) -> dict[str, Any]:
            return self._call("POST", "/find", {**body, **params})  # type: ignore[no-any-return]

        return _walk(page, limit, skip if offset is None else offset, page_size)

    def find_one(self, query: str, **options: Any) -> dict[str, Any] | None:
        """The first match, or None when nothing matches (one request for one record)."""
        found = self.find(query, limit=1, **options)
        return found[0] if found else None

    def get(self, entitytype: str, entityid: str) -> dict[str, Any]:
        return self._call("GET", f"/{_name(entitytype)}/{_quote(entityid)}")  # type: ignore[no-any-return]

    def create(self, entitytype: str, data: dict[str, Any], entityid: str | None = None,
               allow_duplicates: bool = True) -> Any:
        """Create a record; with ``entityid``, add child records (tasks of a job)."""
        if entityid is not None:
            body = dict(data)
            body.setdefault("allow_duplicates", allow_duplicates)
            return self._call("POST", f"/job/{_quote(entityid)}/{_name(entitytype)}s", body)
        return self._call("POST", f"/{_name(entitytype)}", data)

    def update(self, entitytype: str, entityid: str, data: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/{_name(entitytype)}/{_quote(entityid)}", data)  # type: ignore[no-any-return]

    def update_many(self, entitytype: str, first: str | list[dict[str, Any]],
                    second: list[dict[str, Any]] | None = None, *,
                    entityid: str | None = None) -> list[dict[str, Any]]:
        """``update_many('task', job_id, [...])`` or ``update_many('task', [...], entityid=id)``.

        Returns the updated records.
        """
        data: list[dict[str, Any]] | None
        parent: str | None
        if isinstance(first, list):
            data, parent = first, entityid
        else:
            data, parent = second, first
        if not isinstance(parent, str) or not isinstance(data, list):
            raise HubError("update_many needs the parent id and a list of changes")
        return self._call("PATCH", f"/job/{_quote(parent)}/{_name(entitytype)}s",  # type: ignore[no-any-return]
                          {"tasks": data})

    def task_log(self, task_id: str) -> str:
        """The whole log of a task (its tail, until the agent has uploaded it)."""
        return self._call("GET", f"/task/{_quote(task_id)}/log", text=True)  # type: ignore[no-any-return]

    def link(self, path: str, expires: int | str = DEFAULT_EXPIRES) -> dict[str, Any]:
        """A download link to the file ``path`` (``share=projects/thefilm/a.mov``, or
        without ``share=``), valid for ``expires`` seconds or a duration (``"90m"``,
        ``"1h"``, ``"7d"``; at most a week): ``url``, ``name``, ``share``, ``path``,
        ``expires`` (ISO 8601), ``expires_in``, and ``pinnedpubkey`` and ``fingerprint``
        to check the serving agent's certificate. Whoever holds the URL can fetch the file
        with curl, wget, aria2c or a browser until it expires (docs/TRANSFERS.md)."""
        if not isinstance(path, str) or not path:
            raise HubError(f"not a share path: {path!r}")
        try:
            seconds = parse_expires(expires)
        except ValueError as exc:
            raise HubError(str(exc)) from None
        text = path if path.startswith("share=") else f"share={path}"
        return self._call("POST", "/link", {"path": text, "expires": seconds})  # type: ignore[no-any-return]

    # -- files of a share, through the agent that serves it (docs/TRANSFERS.md)
    def ls(self, path: str, recursive: bool = False, limit: int | None = None, skip: int = 0,
           *, page_size: int | None = None) -> list[dict[str, Any]]:
        """The entries of the folder ``path`` (``share=projects/film/``, or without
        ``share=``; a file: its one entry), each ``name``, ``path`` (a share path),
        ``type`` (``file``, ``dir`` or ``link``), ``size`` and ``mtime`` (ISO 8601 UTC);
        with ``recursive``, those below its folders too (a folder before what it holds).
        At most ``limit`` after ``skip``, fetched a page at a time (``page_size``, default
        the hub's 1000), each page after the one before (its ``next`` cursor)."""
        return list(self.iter_ls(path, recursive, limit, skip, page_size=page_size))

    def iter_ls(self, path: str, recursive: bool = False, limit: int | None = None,
                skip: int = 0, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """The entries of ``ls``, one at a time, asking for a page when the one before is
        used up: a huge folder is never one answer."""
        body = {"path": _share_path(path), "recursive": recursive}

        def page(params: dict[str, Any]) -> dict[str, Any]:
            return self._call("POST", "/files/ls", {**body, **params})  # type: ignore[no-any-return]

        return _walk(page, limit, skip, page_size)

    def stat(self, path: str) -> dict[str, Any]:
        """The entry of one file or folder (a folder's ``size``: what its files hold)."""
        return self._call("POST", "/files/stat", {"path": _share_path(path)})  # type: ignore[no-any-return]

    def exists(self, path: str) -> bool:
        """Is there a file, folder or link at ``path``? (An unknown share, or one the
        caller may not read, raises ``ApiError`` as every call does.)"""
        try:
            self.stat(path)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def getsize(self, path: str) -> int:
        """A file's size in bytes; a folder's, what the files below it hold."""
        return int(self.stat(path)["size"])

    def mkdir(self, path: str) -> dict[str, Any]:
        """Make the folder (and those above it that are missing); ``changed`` is false when
        it was there already."""
        return self._call("POST", "/files/mkdir", {"path": _share_path(path)})  # type: ignore[no-any-return]

    def rename(self, path: str, newname: str) -> dict[str, Any]:
        """Rename a file or folder in its folder (``newname``: a name, no '/'); ``result``
        is its share path now. A name taken already is refused."""
        return self._call("POST", "/files/rename", {"path": _share_path(path), "to": newname})  # type: ignore[no-any-return]

    def mv(self, src: str, dst: str) -> dict[str, Any]:
        """Move a file or folder within its share: to ``dst``, or into ``dst`` when that is
        a folder; nothing is replaced. ``result`` is where it is now."""
        return self._call("POST", "/files/mv", {"path": _share_path(src),  # type: ignore[no-any-return]
                                                "to": _share_path(dst)})

    def delete(self, path: str, recursive: bool = False) -> dict[str, Any]:
        """Delete a file, or an empty folder; a folder with what it holds only with
        ``recursive=True`` (else ``ApiError`` 409 ``not_empty``). Never the share's root."""
        return self._call("POST", "/files/delete", {"path": _share_path(path),  # type: ignore[no-any-return]
                                                    "recursive": recursive})

    def file_changes(self, path: str, limit: int = 100, skip: int = 0) -> list[dict[str, Any]]:
        """The changes made through the hub to the files of the share ``path`` names,
        newest first: ``op``, ``path``, ``result``, ``user``, ``username``, ``created``."""
        return self._call("POST", "/files/changes", {  # type: ignore[no-any-return]
            "path": _share_path(path), "limit": limit, "skip": skip})["result"]

    def related(self, entitytype: str, entityid: str, relation: str, *,
                limit: int | None = None, skip: int = 0, attributes: Iterable[str] = (),
                page_size: int | None = None) -> list[dict[str, Any]]:
        """Records related to one: ``related("Organization", org_id, "users")``; an
        organization's users, nodes, collaborations, jobs, created_tasks, roles; a
        collaboration's organizations, nodes, jobs, tasks; a user's roles and jobs; a role's
        users and rules. Fetched page by page, as ``find`` does."""
        if not isinstance(relation, str) or not relation.isidentifier():
            raise HubError(f"not a relation name: {relation!r}")
        path = f"/{_name(entitytype)}/{_quote(entityid)}/{relation}"
        names = _names(attributes)

        def page(params: dict[str, Any]) -> dict[str, Any]:
            if names:
                params["attributes"] = ",".join(names)
            query = urllib.parse.urlencode(params)
            return self._call("GET", f"{path}?{query}" if query else path)  # type: ignore[no-any-return]

        return list(_walk(page, limit, skip, page_size))

    def delete_one(self, entitytype: str, entityid: str) -> bool:
        self._call("DELETE", f"/{_name(entitytype)}/{_quote(entityid)}")
        return True

    @staticmethod
    def str(entity: Any) -> str:
        """Pretty text of a record (or a list of them)."""
        return json.dumps(entity, indent=4, sort_keys=False, default=str)


def _walk(page: Callable[[dict[str, Any]], dict[str, Any]], limit: int | None, skip: int,
          page_size: int | None) -> Iterator[dict[str, Any]]:
    """The records of a list endpoint, page after page, ``page`` asking for one: at most
    ``limit`` of them after ``skip``, each page following the ``next`` cursor of the one
    before."""
    if (limit is not None and limit < 0) or skip < 0:
        raise HubError("limit and skip must not be negative")
    if page_size is not None and page_size < 1:
        raise HubError("page_size must be at least 1")
    left, cursor = limit, None
    # with a limit, pages of at most PAGE: a large limit would be above the hub's maximum
    size = page_size if page_size is not None or limit is None else PAGE
    while left is None or left > 0:
        params: dict[str, Any] = {}
        wanted = [n for n in (left, size) if n is not None]
        if wanted:  # otherwise the hub's default page
            params["limit"] = min(wanted)
        if cursor is not None:
            params["cursor"] = cursor
        elif skip:
            params["skip"] = skip
        answer = page(params)
        records = answer["result"][:left]  # a hub that ignores limit gives no more
        yield from records
        if left is not None:
            left -= len(records)
        cursor = answer.get("next")
        if cursor is None or not answer["result"]:
            return


def _share_path(path: str) -> str:
    if not isinstance(path, str) or not path:
        raise HubError(f"not a share path: {path!r}")
    return path if path.startswith("share=") else f"share={path}"


def _said(raw: bytes) -> str:
    """What an error answer says (``: message``), or nothing when it says nothing."""
    try:
        return f": {json.loads(raw)['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return ""


def _names(attributes: Iterable[str]) -> list[str]:
    if isinstance(attributes, str):  # one name, not its letters
        return [attributes]
    return list(attributes)


def _name(entitytype: str) -> str:
    if not isinstance(entitytype, str) or not entitytype.isidentifier():
        raise HubError(f"not an entity name: {entitytype!r}")
    return entitytype.lower()


def _quote(entityid: str) -> str:
    if not isinstance(entityid, str) or not entityid:
        raise HubError(f"not an id: {entityid!r}")
    return urllib.parse.quote(entityid, safe="")
