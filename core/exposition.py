"""The Prometheus exposition of ``/metrics``, shared by the hub and the agent: which format
the scraper asked for, and the page in it.

Prometheus asks for OpenMetrics first and the classic text format next; curl and browsers
ask for anything and get the text format. A caller that accepts neither (``Accept:
application/json``) is told which formats there are (``NotAcceptable``), never handed a
page it cannot read. Rendering is ``prometheus_client``'s (the standard exposition
library: its output is what ``promtool check metrics`` and Prometheus itself parse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import FerryError

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

# media types a scraper may name (with any parameters); the first three mean "anything"
ACCEPTED = ("*/*", "text/*", "application/*", "text/plain", "application/openmetrics-text")


class NotAcceptable(FerryError):
    """The ``Accept`` header names no format ``/metrics`` is served in."""

    def __init__(self, accept: str) -> None:
        super().__init__(f"/metrics is served as text/plain (the Prometheus text format) or "
                         f"application/openmetrics-text; the request accepts neither "
                         f"(Accept: {accept[:200]})")


def acceptable(accept: str) -> bool:
    """Does ``accept`` (an ``Accept`` header, maybe empty) take a format we serve?"""
    if not accept.strip():
        return True
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(kinds & set(ACCEPTED))


def render(registry: Collector, accept: str) -> tuple[bytes, str]:
    """The page of ``registry`` in the format ``accept`` asks for, and its content type;
    ``NotAcceptable`` when it asks for none we serve."""
    # here, not at the top: the agent's status page imports this module, and an agent
    # nobody scrapes never loads prometheus_client
    from prometheus_client.exposition import choose_encoder  # noqa: PLC0415

    if not acceptable(accept):
        raise NotAcceptable(accept)
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
