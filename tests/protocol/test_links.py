"""Download links' shared parts: their URL, and the expiry as people write it."""

from __future__ import annotations

import pytest

from protocol.links import link_path, link_url, parse_expires


def test_durations() -> None:
    assert [parse_expires(v) for v in (1, "60", "90s", "30m", "1h", "2d", "1w", " 7D ")] == \
        [1, 60, 90, 1800, 3600, 172800, 604800, 604800]
    for bad in ("", "1.5h", "h", "1y", True, "0", "604801"):
        with pytest.raises(ValueError, match="expires"):
            parse_expires(bad)  # type: ignore[arg-type]


def test_the_url_ends_in_the_files_name() -> None:
    assert link_path("s1", "thefilm/latest edit é#1?.mov") == \
        "/transfer/v1/link/s1/thefilm/latest%20edit%20%C3%A9%231%3F.mov"
    assert link_url("https://h:7443/", "s1", "a.mov", "p.q-_") == \
        "https://h:7443/transfer/v1/link/s1/a.mov?ticket=p.q-_"
