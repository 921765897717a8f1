"""What ``ferry link`` prints: the link, until when, and lines that paste into a shell;
and the agent's certificate, checked and saved for wget and aria2c."""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import HubError
from ferry.cli import build_parser
from ferry.link import commands, describe, save_certificate
from protocol import tickets
from protocol.links import LINK as LINK_JOB
from protocol.links import link_url
from protocol.tickets import TicketScope
from protocol.transfer import Share
from transports import tls
from transports.endpoint import TransferEndpoint

KEY = tickets.private_key(os.urandom(32))

LINK = {"url": "https://files:7443/transfer/v1/link/s1/it%27s%20a.mov?ticket=p.s",
        "name": "it's a.mov", "share": "projects", "path": "film/it's a.mov",
        "expires": "2026-12-05T20:00:00.000Z", "expires_in": 86400,
        "pinnedpubkey": "sha256//" + "A" * 43 + "=", "fingerprint": "ab" * 32}


def test_the_lines_paste_into_a_shell() -> None:
    lines = commands(LINK)
    assert shlex.split(lines["curl"]) == ["curl", "-k", "--pinnedpubkey", LINK["pinnedpubkey"],
                                          "-o", "it's a.mov", LINK["url"]]
    assert shlex.split(lines["wget"]) == ["wget", "--no-check-certificate", "-O", "it's a.mov",
                                          LINK["url"]]
    assert shlex.split(lines["aria2c"]) == ["aria2c", "-x4", "--check-certificate=false", "-o",
                                            "it's a.mov", LINK["url"]]
    printed = describe(LINK)
    assert printed[0] == LINK["url"]
    assert "film/it's a.mov: works until 2026-12-05T20:00:00.000Z (1 d)" in printed[2]
    assert all(line.startswith("#") for line in printed[-2:])  # notes paste as comments


def test_an_agent_without_a_pin_is_said_so() -> None:
    older = {**LINK, "pinnedpubkey": ""}
    assert "--pinnedpubkey" not in commands(older)["curl"]
    assert "did not report its key" in describe(older)[-1]


@pytest.mark.parametrize(("argv", "expires"), [([], 3600), (["--expires", "90m"], 5400),
                                               (["--expires", "7d"], 604800)])
def test_expires_takes_durations(argv: list[str], expires: int) -> None:
    args = build_parser().parse_args(["link", "share=p/a.mov", *argv])
    assert args.expires == expires and args.path == "share=p/a.mov"


def test_bad_flags_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, needle in ((["--expires", "8d"], "1 s to 7 days"),
                         (["--hub", "http://h", "--server", "prod"], "not allowed with")):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["link", "share=p/a.mov", *argv])
        assert needle in capsys.readouterr().err


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[tuple[TransferEndpoint, str, Path]]:
    """An endpoint in process, on the address this machine's name resolves to (its
    certificate names that name), serving one file; skipped where the name resolves to
    none of this machine's addresses."""
    host = socket.gethostname()
    try:
        address = socket.gethostbyname(host)
    except OSError as exc:
        pytest.skip(f"this machine's name {host!r} does not resolve: {exc}")
    root = tmp_path / "share"
    root.mkdir()
    (root / "a.bin").write_bytes(random.randbytes(300_000))
    endpoint = TransferEndpoint("srv1", tickets.public_key(tickets.public_key_text(KEY)),
                                {"sh1": Share("sh1", "projects", root)})
    key, cert = tls.ensure_identity(tmp_path / "tls", "srv1")
    try:
        port = await endpoint.start(address, 0, tls.server_context(key, cert))
    except OSError as exc:
        pytest.skip(f"cannot listen on {address} ({host}): {exc}")
    yield endpoint, f"{host}:{port}", cert
    await endpoint.stop()


def _link(where: str, cert: Path) -> dict[str, Any]:
    ticket = tickets.issue(KEY, TicketScope(server="srv1", share="sh1", path="a.bin",
                                            op="read", job=LINK_JOB, task="t"), ttl=60)
    return {**LINK, "url": link_url(f"https://{where}", "sh1", "a.bin", ticket),
            "name": "a.bin", "fingerprint": tls.fingerprint(cert),
            "pinnedpubkey": tls.public_key_pin(cert)}


async def test_a_saved_certificate_lets_wget_and_aria2c_check_the_agent(
        endpoint: tuple[TransferEndpoint, str, Path], tmp_path: Path) -> None:
    server, where, cert = endpoint
    link = _link(where, cert)
    saved = tmp_path / "agent.pem"
    assert await asyncio.to_thread(save_certificate, link, saved)
    assert ssl.PEM_cert_to_DER_cert(saved.read_text()) == \
        ssl.PEM_cert_to_DER_cert(cert.read_text())
    lines = commands(link, saved)
    assert "--no-check-certificate" not in lines["wget"] and " -k " not in lines["curl"]
    for tool, line in lines.items():
        if shutil.which(tool) is None:
            continue
        folder = tmp_path / tool
        folder.mkdir()
        proc = await asyncio.create_subprocess_shell(line, cwd=folder,
                                                     stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        assert proc.returncode == 0, (line, out)
        assert (folder / "a.bin").read_bytes() == (server.shares["sh1"].root / "a.bin").read_bytes()
    # by its address, the certificate does not name the host: saved, but no help
    address = f"{socket.gethostbyname(where.split(':')[0])}:{where.split(':')[1]}"
    assert not await asyncio.to_thread(save_certificate, _link(address, cert), saved)


async def test_another_certificate_is_not_saved(
        endpoint: tuple[TransferEndpoint, str, Path], tmp_path: Path) -> None:
    _, where, cert = endpoint
    link = {**_link(where, cert), "fingerprint": "00" * 32}
    with pytest.raises(HubError, match="another certificate than the hub recorded"):
        await asyncio.to_thread(save_certificate, link, tmp_path / "agent.pem")
    assert not (tmp_path / "agent.pem").exists()
