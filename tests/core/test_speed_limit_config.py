"""``transfer_speed_limit`` in the agent's and the hub's config (issue 19): read as a rate,
and a bad one stops the process with an error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig
from core import config
from core.errors import ConfigError
from hub.config import HubConfig


@pytest.mark.parametrize(("kind", "head"), [(AgentConfig, "hub: 'http://x', "),
                                           (HubConfig, "")])
def test_a_speed_limit_is_a_rate_and_a_bad_one_names_the_key(
        tmp_path: Path, kind: type, head: str) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"application: {{{head}transfer_speed_limit: 100MB/s}}\n")
    assert config.load(path, kind).config.transfer_speed_limit == "100MB/s"
    for bad in ("100Mb/s", "fast", "0"):
        path.write_text(f"application: {{{head}transfer_speed_limit: '{bad}'}}\n")
        with pytest.raises(ConfigError) as info:
            config.load(path, kind)
        assert info.value.key == "application.transfer_speed_limit", bad
        assert "a rate like '50MB/s'" in str(info.value) or "above 0" in str(info.value)


def test_the_hubs_limit_in_bytes() -> None:
    assert HubConfig(transfer_speed_limit="40MB/s").speed_limit == 40_000_000
    assert HubConfig().speed_limit == 0
