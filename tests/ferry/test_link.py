"""What ``ferry link`` prints: the link, until when, and lines that paste into a shell."""

from __future__ import annotations

import shlex

import pytest

from ferry.cli import build_parser
from ferry.link import commands, describe

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
