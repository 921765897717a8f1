"""The agent's config: one frozen, validated object built from the YAML file."""

from __future__ import annotations

from typing import Annotated

import msgspec
from yarl import URL

from ferry.logs import LoggingConfig

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class AgentConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Keys of an agent's config file (docs/CONFIG.md)."""

    hub: str
    api_key: Annotated[str, msgspec.Meta(min_length=8)] | None = None
    api_key_file: str | None = None  # read at start; keeps the key out of the config
    site: str | None = None  # a site name at the hub; default: the hub's main site
    lanes: Annotated[int, msgspec.Meta(ge=1, le=1024)] | None = None  # default: core count
    status_ip: str = "127.0.0.1"
    status_port: Port = 0  # 0 picks a free port; the one in use is in runtime.json
    # the transfer endpoint that serves this agent's shares (HTTPS); transfer_host is the
    # name or address peers connect to (default: transfer_ip, or this host's name)
    transfer: bool = True
    transfer_ip: str = "0.0.0.0"
    transfer_port: Port = 0
    transfer_host: Annotated[str, msgspec.Meta(min_length=1, max_length=255,
                                               pattern=r"^[^\s/?#@]+$")] | None = None
    # the port peers connect to when it is not transfer_port (port forwarding, a relay)
    transfer_public_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    transfer_slots: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4  # transfer buckets at once
    # the organization's private key, on a node of a collaboration (agent/orgkey.py);
    # default: organization-key.pem in the agent's data folder
    organization_key_file: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    drain_timeout: Seconds = 60.0
    retry_max_delay: Seconds = 30.0
    request_timeout: Seconds = 30.0
    logging: LoggingConfig = LoggingConfig()

    def __post_init__(self) -> None:
        try:
            url = URL(self.hub)
            port = url.port  # parses it: an out-of-range port raises here
        except ValueError as exc:
            raise ValueError(f"`hub`: not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host or port is None:
            raise ValueError(f"`hub`: expected an http:// or https:// URL with a host, got "
                             f"{self.hub!r}")
        if url.query_string or url.fragment:
            raise ValueError("`hub`: the URL must not have a query or fragment")
