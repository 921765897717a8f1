"""The agent's config: one frozen, validated object built from the YAML file."""

from __future__ import annotations

import re
import zoneinfo
from datetime import tzinfo
from typing import Annotated, Literal

import msgspec
from yarl import URL

from agent.schedule import Schedule
from core.errors import ConfigError
from core.logs import LoggingConfig
from lanes.images import ImagePolicy
from protocol.docker import parse_size
from protocol.rates import parse_rate

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Grace = Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)]
FilePath = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
# what becomes of running buckets once the agent takes no work: they run to their end, or
# after ``grace`` seconds go back to the hub (no attempt spent)
Running = Literal["finish", "handback"]


class ScheduleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """When this agent takes work (agent/schedule.py): outside every window, none."""

    windows: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
                       msgspec.Meta(min_length=1, max_length=64)]
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "local"
    running: Running = "finish"
    grace: Grace = 300.0
    clock: FilePath | None = None  # tests and operators: a file whose ISO time stands for now

    def __post_init__(self) -> None:
        try:
            Schedule.parse(self.windows)
        except ValueError as exc:
            raise ValueError(f"`windows`: {exc}") from None
        if self.timezone != "local":
            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"`timezone`: {self.timezone!r} is not a time zone (write "
                                 f"local, or an IANA name such as Europe/Paris)") from None

    @property
    def zone(self) -> tzinfo | None:
        """The windows' time zone; None: this machine's."""
        return None if self.timezone == "local" else zoneinfo.ZoneInfo(self.timezone)


class NimbyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """"Not in my backyard" (agent/nimby.py): no work while the machine's user is active, or
    while other processes keep its CPU busier than ``cpu_above`` percent."""

    user_active: bool = True
    idle_after: Grace = 300.0  # seconds the user must be idle before work is taken
    cpu_above: Annotated[float, msgspec.Meta(gt=0, le=100)] | None = None
    running: Running = "finish"
    grace: Grace = 30.0
    interval: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 5.0  # between measurements
    activity: FilePath | None = None  # tests and operators: a file that replaces logind

    def __post_init__(self) -> None:
        if not self.user_active and self.cpu_above is None:
            raise ValueError("`user_active`: nothing to watch: set user_active: true or "
                             "cpu_above, or remove the nimby section")


class ImagesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The images a node runs: by name (``repo:tag``; no tag means ``latest``), by a regex
    over the whole name, or by digest (``sha256:…``). Empty: none."""

    names: list[Annotated[str, msgspec.Meta(min_length=1, max_length=512)]] = []
    patterns: list[Annotated[str, msgspec.Meta(min_length=1, max_length=512)]] = []
    digests: list[Annotated[str, msgspec.Meta(min_length=1, max_length=80)]] = []

    def __post_init__(self) -> None:
        try:
            ImagePolicy.build(self.names, self.patterns, self.digests)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class DockerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Docker runs of federated jobs (docs/DOCKER.md): at most ``slots`` at once, each
    within the node's maxima."""

    slots: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    images: ImagesConfig = ImagesConfig()
    cpus: Annotated[float, msgspec.Meta(gt=0, le=1024)] = 1.0  # per run, at most
    memory: int | str = "1g"  # per run, at most: bytes or "512m"
    pids: Annotated[int, msgspec.Meta(ge=16, le=1 << 22)] = 256
    allow_root: bool = False  # may a run ask for uid 0 (in its user namespace-less container)
    folder: Annotated[str, msgspec.Meta(min_length=1)] | None = None  # default: <data>/docker
    # the node's own data, which every run reads (read-only) at /ferry/data
    data: Annotated[str, msgspec.Meta(min_length=1)] | None = None

    def __post_init__(self) -> None:
        try:
            parse_size(self.memory)
        except ValueError as exc:
            raise ValueError(f"`docker.memory`: {exc}") from None

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)


class AgentConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Keys of an agent's config file (docs/CONFIG.md)."""

    # the hub's URL or server name; a list: hubs in order, the next taking over while
    # one is unavailable (agent/hubs.py)
    hub: str | Annotated[list[str], msgspec.Meta(min_length=1, max_length=16)]
    failback_interval: Seconds = 10.0  # seconds between asks whether the first hub is back
    api_key: Annotated[str, msgspec.Meta(min_length=8)] | None = None
    api_key_file: str | None = None  # read at start; keeps the key out of the config
    site: str | None = None  # a site name at the hub; default: the hub's main site
    # compute lanes; default: core count. 0: this agent refuses compute work altogether
    # (it still serves shares, runs transfers and docker runs)
    lanes: Annotated[int, msgspec.Meta(ge=0, le=1024)] | None = None
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
    # what a transfer peer may make this agent take (docs/TRANSFERS.md, "Peers"): a file of
    # at most transfer_max_file_size bytes (or "512g"), a folder of at most
    # transfer_max_files files, each request's bytes at transfer_min_rate bytes/s (or
    # "32k") at least, once its transfer_grace seconds are up
    transfer_max_file_size: int | str = "1t"
    transfer_max_files: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000
    transfer_min_rate: int | str = "32k"
    transfer_grace: Seconds = 60.0
    # bytes a second all of this agent's transfers move at most together ("100MB/s";
    # none by default); a job's own limit, or the hub's, may be lower (docs/TRANSFERS.md)
    transfer_speed_limit: int | str | None = None
    # the organization's private key, on a node of a collaboration (agent/orgkey.py);
    # default: organization-key.pem in the agent's data folder
    organization_key_file: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    docker: DockerConfig | None = None  # runs of docker jobs; off when absent
    # a workstation's hours and its user (docs/CONFIG.md, "Workstations"); off when absent
    schedule: ScheduleConfig | None = None
    nimby: NimbyConfig | None = None
    drain_timeout: Seconds = 60.0
    retry_max_delay: Seconds = 30.0
    request_timeout: Seconds = 30.0
    logging: LoggingConfig = LoggingConfig()

    def __post_init__(self) -> None:
        for key in ("transfer_max_file_size", "transfer_min_rate"):
            try:
                parse_size(getattr(self, key))
            except ValueError as exc:
                raise ValueError(f"`{key}`: {exc}") from None
        if self.transfer_speed_limit is not None:
            try:
                parse_rate(self.transfer_speed_limit)
            except ValueError as exc:
                raise ValueError(f"`transfer_speed_limit`: {exc}") from None
        if parse_size(self.transfer_max_file_size) > 1 << 40:
            raise ValueError("`transfer_max_file_size`: at most 1 TiB, the most one transfer "
                             "moves (4,096 chunks of 256 MiB)")
        entries = [self.hub] if isinstance(self.hub, str) else self.hub
        if not entries:
            raise ValueError("`hub`: name at least one hub")
        seen: set[str] = set()
        for entry in entries:
            if not isinstance(entry, str):
                raise ValueError(f"`hub`: expected a URL or a server name, got {entry!r:.80}")
            _check_hub(entry)
            if entry.lower() in seen:
                raise ValueError(f"`hub`: {entry!r} is listed twice")
            seen.add(entry.lower())

    @property
    def hubs(self) -> list[str]:
        """The hubs in order of preference (URLs or server names)."""
        return [self.hub] if isinstance(self.hub, str) else list(self.hub)


_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _check_hub(entry: str) -> None:
    """A hub's URL, or the name of a server in the servers database."""
    if "://" not in entry:
        if not _SERVER_NAME.fullmatch(entry):
            raise ValueError(f"`hub`: expected an http:// or https:// URL with a host, or a "
                             f"server name (`ferry servers list`), got {entry!r}")
        return
    try:
        url = URL(entry)
        port = url.port  # parses it: an out-of-range port raises here
    except ValueError as exc:
        raise ValueError(f"`hub`: not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host or port is None:
        raise ValueError(f"`hub`: expected an http:// or https:// URL with a host, got "
                         f"{entry!r}")
    if url.query_string or url.fragment:
        raise ValueError("`hub`: the URL must not have a query or fragment")
