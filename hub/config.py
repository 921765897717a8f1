"""The hub's config: one frozen, validated object built from the YAML file."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, ClassVar, Literal

import msgspec

from core.logs import LoggingConfig
from protocol.rates import parse_rate

MIN_SECRET = 32  # characters of a jwt_secret_key: HS256 wants 256 bits of key
EnvType = Literal["dev", "test", "acc", "prod"]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Hours = Annotated[float, msgspec.Meta(gt=0)]
# agents and Session call <hub URL>/api/v1, so a proxy sub-path goes before "/api"
ApiPath = Annotated[str, msgspec.Meta(pattern=r"^(/[A-Za-z0-9._~-]+)*/api$")]


class SmtpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    server: str
    port: Port = 587
    username: str | None = None
    password: str | None = None


class AccsynApiConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """accsyn's own Python client served on a TLS port of its own (docs/ACCSYN.md).
    ``certificate`` and ``key``: PEM files; without them the hub makes a self-signed pair
    in its data folder once. ``workspace_alias``: a workspace name scripts may give besides
    the hub instance's own name."""

    port: Port
    certificate: str | None = None
    key: str | None = None
    workspace_alias: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None

    def __post_init__(self) -> None:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("`certificate`: give both certificate and key, or neither (the "
                             "hub then makes a self-signed pair)")


class HubConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Keys of the reference's server config, plus Ferry's own (documented in docs/CONFIG.md)."""

    # --- the reference's keys
    description: str = ""
    type: EnvType | None = None  # defaults to the environment's name, else prod
    ip: str = "127.0.0.1"
    port: Port = 7700  # 0 picks a free port; the one in use is written to runtime.json
    api_path: ApiPath = "/api"
    uri: str = "sqlite:///hub.sqlite"
    allow_drop_all: bool = False
    jwt_secret_key: str | None = None  # 32 characters or more (__post_init__ says why)
    logging: LoggingConfig = LoggingConfig()
    smtp: SmtpConfig | None = None
    support_email: str | None = None
    email_token_validity_minutes: Annotated[int, msgspec.Meta(gt=0)] = 60

    # --- Ferry's keys
    checkin_interval: Seconds = 15.0
    offline_grace: Seconds = 900.0
    token_lifetime_hours: Hours | None = None  # default: 24 for type test, else 6
    agent_token_minutes: Seconds = 60.0
    max_body_size: Annotated[int, msgspec.Meta(ge=1024)] = 1024 * 1024
    trusted_proxies: list[str] = []
    login_failures_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 10  # per address, then 429
    shutdown_timeout: Seconds = 10.0
    # list answers (/find, relations): records in a page by default and at most, and the
    # characters of large fields (a task's result, a job's spec) a page holds before it
    # ends early; queries one user (or agent) runs at once (more get 429), and in the
    # whole process (more wait their turn): what a listing costs the hub stays bounded
    find_page: Annotated[int, msgspec.Meta(ge=1)] = 1000
    find_page_max: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    find_page_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 32 * 1024 * 1024
    find_concurrent_per_user: Annotated[int, msgspec.Meta(ge=1)] = 2
    find_concurrent: Annotated[int, msgspec.Meta(ge=1)] = 2
    # jobs: a finished job leaves the active set after job_inactive_after, and is archived
    # after job_archive_after (jobs.rst: one hour and 14 days)
    job_inactive_after: Seconds = 3600.0
    job_archive_after: Seconds = 14 * 86400.0
    lease_seconds: Seconds = 30.0  # a bucket's lease; heartbeats renew it
    heartbeat_interval: Seconds = 5.0  # agents heartbeat this often while they hold buckets
    claim_wait_max: Annotated[float, msgspec.Meta(ge=0, le=60)] = 30.0
    max_log_size: Annotated[int, msgspec.Meta(ge=1024)] = 64 * 1024 * 1024
    # seconds after a bucket ended that the log of a run in it is still taken (an agent
    # sends it right after the run's end report; longer only when the hub was away)
    log_grace: Seconds = 900.0
    # GET /metrics (docs/METRICS.md): the bearer token scrapers send; without one, it is
    # served to callers on this machine alone
    metrics_token: Annotated[str, msgspec.Meta(min_length=16, pattern=r"^[!-~]+$")] | None = None

    # --- webhooks (docs/WEBHOOKS.md): an attempt's timeout; attempts before a delivery
    # fails; the first retry's delay (then doubling, at most an hour); deliveries in flight
    # at once per hub process; the hosts a webhook URL may name (globs; empty: any host)
    webhook_timeout: Seconds = 10.0
    webhook_attempts: Annotated[int, msgspec.Meta(ge=1, le=30)] = 8
    webhook_backoff: Seconds = 10.0
    webhook_concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    webhook_hosts: list[str] = []

    # keys of the reference's example that Ferry accepts and does not use (a warning each)
    unused_keys: ClassVar[dict[str, str]] = {
        "vpn_server": "Ferry needs no VPN server: docker runs have no network, and their "
                      "containers never talk to each other (docs/CONFIG.md); remove the key",
    }

    # --- transfers' speed limit (issue 19): bytes a second a transfer job moves at most
    # when it names no lower limit of its own ("100MB/s"; none by default)
    transfer_speed_limit: int | str | None = None

    # --- accsyn's Python client (issue 20, docs/ACCSYN.md): off unless given
    accsyn_api: AccsynApiConfig | None = None

    def __post_init__(self) -> None:
        if self.jwt_secret_key is not None and len(self.jwt_secret_key) < MIN_SECRET:
            raise ValueError(
                f"`jwt_secret_key`: the token secret is {len(self.jwt_secret_key)} characters, "
                f"and Ferry needs at least {MIN_SECRET}: anyone holding one token could guess a short secret "
                "offline and then sign tokens for any user. Set a random one (python3 -c "
                "'import secrets; print(secrets.token_hex(32))'), or remove the key and the "
                "hub keeps a random secret in its database")
        if self.transfer_speed_limit is not None:
            try:
                parse_rate(self.transfer_speed_limit)
            except ValueError as exc:
                raise ValueError(f"`transfer_speed_limit`: {exc}") from None
        if self.heartbeat_interval * 2 > self.lease_seconds:
            raise ValueError("`heartbeat_interval`: must be at most half of lease_seconds "
                             f"({self.lease_seconds:g}), or leases run out between heartbeats")
        if self.job_archive_after <= self.job_inactive_after:
            raise ValueError("`job_archive_after`: must be longer than job_inactive_after")
        if self.accsyn_api is not None and self.accsyn_api.port == self.port != 0:
            raise ValueError("`accsyn_api`: its port must differ from the hub's own port")
        if self.find_page > self.find_page_max:
            raise ValueError(f"`find_page`: must be at most find_page_max ({self.find_page_max})")

    def environment_type(self, section: str) -> EnvType:
        if self.type is not None:
            return self.type
        if section in ("dev", "test", "acc", "prod"):
            return section  # type: ignore[return-value]
        return "prod"

    def user_token_lifetime(self, section: str) -> timedelta:
        if self.token_lifetime_hours is not None:
            return timedelta(hours=self.token_lifetime_hours)
        return timedelta(hours=24 if self.environment_type(section) == "test" else 6)

    @property
    def speed_limit(self) -> int:
        """``transfer_speed_limit`` in bytes a second (0: none)."""
        return parse_rate(self.transfer_speed_limit) if self.transfer_speed_limit else 0

    @property
    def api_prefix(self) -> str:
        return self.api_path.rstrip("/") + "/v1"
