"""The agent's side of transfers that others start: its endpoint serves its shares.

The endpoint listens before the agent enrolls (so that enrollment can tell the
hub where it is and which certificate to pin), and refuses every ticket until
enrollment has brought the agent's client id and the hub's ticket key. The
shares come with every check-in; a share whose folder is missing is logged
and served as soon as it exists.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from agent.config import AgentConfig
from agent.moving import Mover
from core.errors import ConfigError
from protocol import ShareInfo, TransferInfo, tickets
from protocol.docker import parse_size
from protocol.rates import parse_rate
from protocol.transfer import Share
from transports import tls
from transports.endpoint import TransferEndpoint
from transports.limits import Limits

log = structlog.get_logger("agent.transfer")

Checkin = Callable[[], Awaitable[None]]  # one check-in, now


def transfer_limits(config: AgentConfig) -> Limits:
    """What a transfer peer may make this agent take, from its config."""
    return Limits(max_file_size=parse_size(config.transfer_max_file_size),
                  max_files=config.transfer_max_files,
                  min_rate=parse_size(config.transfer_min_rate), grace=config.transfer_grace)


class TransferService:
    """The endpoint and the mover of one agent. ``checkin`` checks in at once: a peer named
    a share the endpoint does not know (yet), and the check-in's answer brings the shares."""

    def __init__(self, config: AgentConfig, data_dir: Path, checkin: Checkin | None = None
                 ) -> None:
        self.config = config
        self.data_dir = data_dir
        limits = transfer_limits(config)
        self.endpoint = TransferEndpoint(server_id="", ticket_key=None, limits=limits)
        self.endpoint.refresh = self._refresh  # TransferEndpoint takes this hook as an attribute
        self.checkin = checkin
        self._refreshing: asyncio.Future[None] | None = None
        # runs the transfer tasks, within the agent's speed limit for all of them
        self.mover = Mover(lambda: self.endpoint.shares, limits, speed_limit=(
            parse_rate(config.transfer_speed_limit) if config.transfer_speed_limit else 0))
        self._refreshed = 0.0
        self.url = ""
        self.fingerprint = ""
        self.pin = ""  # sha256//… of the certificate's public key (curl --pinnedpubkey)

    async def start(self) -> None:
        key, cert = await asyncio.to_thread(tls.ensure_identity, self.data_dir, "agent")
        self.fingerprint = await asyncio.to_thread(tls.fingerprint, cert)
        self.pin = await asyncio.to_thread(tls.public_key_pin, cert)
        try:
            port = await self.endpoint.start(self.config.transfer_ip, self.config.transfer_port,
                                             tls.server_context(key, cert))
        except OSError as exc:
            raise ConfigError(f"cannot serve transfers on {self.config.transfer_ip}:"
                              f"{self.config.transfer_port}: {exc.strerror or exc}",
                              key="transfer_port") from None
        host = self.config.transfer_host or (
            self.config.transfer_ip if self.config.transfer_ip not in ("0.0.0.0", "::")
            else socket.gethostname())
        public = self.config.transfer_public_port or port
        self.url = f"https://{f'[{host}]' if ':' in host else host}:{public}"
        log.info("serving transfers", url=self.url, fingerprint=self.fingerprint[:16])

    def info(self) -> TransferInfo | None:
        return TransferInfo(url=self.url, fingerprint=self.fingerprint, pin=self.pin) \
            if self.url else None

    def enrolled(self, client_id: str, ticket_key: str) -> None:
        self.endpoint.server_id = client_id
        if ticket_key:
            self.endpoint.ticket_key = tickets.public_key(ticket_key)

    def set_shares(self, shares: list[ShareInfo]) -> None:
        now = {s.id: Share(s.id, s.name, Path(s.path)) for s in shares}
        if now == self.endpoint.shares:
            return
        for share in now.values():
            if share.id not in self.endpoint.shares or self.endpoint.shares[share.id] != share:
                if not share.root.is_dir():
                    log.warning("share folder missing; serving it once it exists",
                                share=share.name, path=str(share.root))
                else:
                    log.info("serving share", share=share.name, path=str(share.root))
        for gone in set(self.endpoint.shares) - set(now):
            log.info("no longer serving share", share=self.endpoint.shares[gone].name)
        self.endpoint.shares = now

    async def _refresh(self) -> None:
        """Check in now, for a share asked for that we do not know yet: at most every
        2 s, and callers at the same moment share one check-in."""
        if self.checkin is None:
            return
        if self._refreshing is None:
            if time.monotonic() - self._refreshed < 2.0:
                return
            self._refreshed = time.monotonic()
            self._refreshing = asyncio.ensure_future(self.checkin())
        waiting = self._refreshing
        try:
            await asyncio.wait_for(asyncio.shield(waiting), timeout=5.0)
        except Exception as exc:  # the hub is away: answer with what we know
            log.warning("could not ask the hub for this agent's shares", error=str(exc))
        finally:
            if waiting.done():
                self._refreshing = None

    def status(self) -> dict[str, object]:
        return {"url": self.url, "fingerprint": self.fingerprint,
                "shares": sorted(s.name for s in self.endpoint.shares.values()),
                "refused": self.endpoint.refused,
                "served_chunks": self.endpoint.served_chunks,
                "served_links": self.endpoint.served_links,
                "received_chunks": self.endpoint.received_chunks,
                "served_bytes": self.endpoint.served_bytes,
                "received_bytes": self.endpoint.received_bytes,
                # bytes/s (0: none): the agent's own, and the one in force for each job
                # running here (the lowest of the job's and the agent's)
                "speed_limit": self.mover.agent_rate.rate,
                "speed_limits": self.mover.speed_limits()}

    def moved_bytes(self) -> tuple[int, int]:
        """File bytes this agent's transfers took in and sent out so far: what it pulled
        or was pushed, and what it served or pushed (for the check-in's ``s_t``)."""
        return (self.endpoint.received_bytes + self.mover.bytes_in,
                self.endpoint.served_bytes + self.mover.bytes_out)

    async def stop(self) -> None:
        await self.endpoint.stop()
