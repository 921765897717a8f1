"""``ferry link SHAREPATH``: a download link to a file of a share, with the lines that
fetch it with curl, wget and aria2c (``Session.link``; docs/TRANSFERS.md).

The hub is reached as ``Session`` reaches it: ``--hub URL`` or ``FERRY_HUB``, or
``--server NAME`` from the servers database (its stored token, if any); as
``--username`` or ``FERRY_USERNAME`` with ``FERRY_PASSWORD`` (asked for on a terminal
when not set), or with ``FERRY_API_KEY``. A password is never taken as a flag: it would
show in the process list and the shell's history.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import shlex
import socket
import ssl
import sys
import textwrap
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import write_atomic
from core.errors import HubError
from protocol.links import DEFAULT_EXPIRES, MAX_EXPIRES, parse_expires

if TYPE_CHECKING:  # loaded by ``ferry link`` alone: every ferry process builds the parser
    from hub.session import Session

HELP = "make a download link to a file of a share, for curl, wget, aria2c or a browser"


def _expires(text: str) -> int:
    try:
        return parse_expires(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ferry link`` to the ``ferry`` command's groups."""
    parser = sub.add_parser(
        "link", help=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            HELP + ". Anyone holding the link can download the file (resuming, and with "
            "several connections) until it expires; no agent is needed. It cannot be taken "
            "back before then."),
        epilog="the hub and who you are:\n"
        "  --hub URL or FERRY_HUB, or --server NAME (ferry servers; its stored token is used)\n"
        "  --username or FERRY_USERNAME, with FERRY_PASSWORD (asked for on a terminal), or\n"
        "  FERRY_API_KEY\n\n"
        "example:\n"
        "  FERRY_HUB=http://hub:7700 FERRY_USERNAME=lars ferry link "
        "share=projects/thefilm/edit.mov --expires 1d")
    parser.add_argument("path", metavar="SHAREPATH",
                        help="the file: share=<share>/<path> (or <share>/<path>)")
    parser.add_argument("--expires", type=_expires, default=DEFAULT_EXPIRES, metavar="TIME",
                        help="how long the link works: seconds, or 90m, 1h, 2d, 1w "
                        f"(default 1h, at most {MAX_EXPIRES // 86400} days)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--hub", metavar="URL", help="the hub's URL (default: FERRY_HUB, "
                       "else http://127.0.0.1:7700)")
    where.add_argument("--server", metavar="NAME", help="a hub of the servers database")
    parser.add_argument("--username", metavar="NAME",
                        help="log in as this user (default: FERRY_USERNAME)")
    parser.add_argument("--save-cert", type=Path, metavar="FILE",
                        help="fetch the serving agent's certificate, check it against the "
                        "fingerprint the hub recorded, and save it here: where it names the "
                        "link's host, the wget and aria2c lines check it (--ca-certificate)")
    parser.add_argument("--json", action="store_true",
                        help="print the hub's answer as JSON, nothing else")
    parser.set_defaults(func=cmd_link)


def _session(args: argparse.Namespace) -> Session:
    from hub.session import Session  # noqa: PLC0415 - see the import above

    username = args.username or os.environ.get("FERRY_USERNAME")
    password = os.environ.get("FERRY_PASSWORD")
    if username and password is None and not os.environ.get("FERRY_API_KEY"):
        if not sys.stdin.isatty():
            raise HubError(f"no password for user '{username}': set FERRY_PASSWORD (or use "
                           "FERRY_API_KEY)")
        password = getpass.getpass(f"password of {username}: ")
    return Session(args.hub, username=username, password=password, server=args.server)


def cmd_link(args: argparse.Namespace) -> int:
    link = _session(args).link(args.path, args.expires)
    checked: Path | None = None
    if args.save_cert is not None:
        checked = args.save_cert if save_certificate(link, args.save_cert) else None
    if args.json:
        print(json.dumps(link, indent=2))
        return 0
    for line in describe(link, checked):
        print(line)
    if args.save_cert is not None and checked is None:
        print(f"# {args.save_cert} holds the agent's certificate, but it names another host "
              "than the link's: wget and aria2c cannot check it")
    return 0


def save_certificate(link: dict[str, Any], path: Path) -> bool:
    """Fetch the certificate the link's agent shows, check it is the one the hub recorded
    (``fingerprint``), and save it at ``path`` (PEM). True when it then checks a connection
    to the link's host as its own CA (it names that host): wget and aria2c can use it."""
    url = urllib.parse.urlsplit(link["url"])
    host, port = url.hostname or "", url.port or 443
    where = f"{host}:{port}"
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=10) as raw, \
                insecure.wrap_socket(raw, server_hostname=host) as conn:
            der = conn.getpeercert(binary_form=True)
    except OSError as exc:
        raise HubError(f"cannot fetch the certificate of the agent at {where}: {exc}") from None
    if not der or not link.get("fingerprint") or \
            hashlib.sha256(der).hexdigest() != link["fingerprint"]:
        raise HubError(f"the agent at {where} shows another certificate than the hub "
                       f"recorded for it: {path} not saved")
    write_atomic(path, ssl.DER_cert_to_PEM_cert(der), mode=0o644)
    strict = ssl.create_default_context(cafile=str(path))
    try:
        with socket.create_connection((host, port), timeout=10) as raw, \
                strict.wrap_socket(raw, server_hostname=host):
            return True
    except (ssl.SSLError, OSError):
        return False


def commands(link: dict[str, Any], cert: Path | None = None) -> dict[str, str]:
    """Ready-to-paste lines that download the link as its file's name; with ``cert``, the
    agent's certificate checked for the link's host, the clients check it."""
    url, name = shlex.quote(link["url"]), shlex.quote(link["name"])
    pin = f"--pinnedpubkey {shlex.quote(link['pinnedpubkey'])} " if link.get("pinnedpubkey") \
        else ""
    if cert is not None:
        ca = shlex.quote(str(cert))
        return {"curl": f"curl --cacert {ca} {pin}-o {name} {url}",
                "wget": f"wget --ca-certificate={ca} -O {name} {url}",
                "aria2c": f"aria2c -x4 --ca-certificate={ca} -o {name} {url}"}
    return {"curl": f"curl -k {pin}-o {name} {url}",
            "wget": f"wget --no-check-certificate -O {name} {url}",
            "aria2c": f"aria2c -x4 --check-certificate=false -o {name} {url}"}


def describe(link: dict[str, Any], cert: Path | None = None) -> list[str]:
    """What ``ferry link`` prints: the link, until when, and how to fetch it."""
    lines = [link["url"], "",
             f"{link['share']}/{link['path']}: works until {link['expires']} "
             f"({_span(link['expires_in'])}), for anyone who has the link", ""]
    lines += list(commands(link, cert).values())
    lines += ["", "# interrupted? the same line resumes with -C - added (curl), or -c (wget, "
              "aria2c)"]
    if cert is not None:
        lines.append(f"# each checks the agent's certificate ({cert}, as the hub recorded "
                     "it): give it along with the link")
    elif link.get("pinnedpubkey"):
        lines.append("# curl checks that it talks to the agent that serves the share "
                     "(--pinnedpubkey); wget and aria2c cannot pin a key, and do not check "
                     "the agent's self-signed certificate at all (--save-cert FILE may let "
                     "them)")
    else:
        lines.append("# the serving agent is older than download links and did not report "
                     "its key: no client can check its certificate (upgrade the agent)")
    return lines


def _span(seconds: int) -> str:
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
