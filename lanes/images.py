"""Which images a node runs: an allowlist by name, regex or digest.

An image is looked up on the node's engine (nothing is pulled) and checked
against the policy by everything it is known by: the name it was asked by,
its tags, its repository digests and its id. The container then runs by
that id, so a tag moved after the check cannot swap the content that passed.
An empty policy allows nothing.

This module never touches the engine (the agent's config checks a policy with it
before any container runs); ``lanes.docker_lane`` looks images up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from lanes.base import LaneError

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class ImageRefused(LaneError):
    """The image is not on this node, or the node's policy does not allow it."""


@dataclass(frozen=True)
class ResolvedImage:
    """An image as the engine knows it."""

    requested: str
    id: str  # "sha256:…", what the container runs
    tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()  # "name@sha256:…"

    def names(self) -> set[str]:
        """Every name the image is known by, normalised."""
        found = {normalise(t) for t in self.tags}
        found |= {normalise(d.split("@", 1)[0]) for d in self.repo_digests}
        if not _is_digest_ref(self.requested):
            found.add(normalise(self.requested))
        return found

    def digests(self) -> set[str]:
        return {self.id, *(d.split("@", 1)[1] for d in self.repo_digests if "@" in d)}


@dataclass(frozen=True)
class ImagePolicy:
    """The node's allowlist. ``names`` match exactly (``:latest`` when no tag is given),
    ``patterns`` are regular expressions that must match a whole name, ``digests`` are
    ``sha256:`` image ids or repository digests."""

    names: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    digests: frozenset[str] = frozenset()

    @classmethod
    def build(cls, names: Iterable[str] = (), patterns: Iterable[str] = (),
              digests: Iterable[str] = ()) -> ImagePolicy:
        """A policy from plain strings; a bad regex or digest is a ``ConfigError``."""
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise ConfigError(f"image pattern {pattern!r} is not a valid regex: {exc}",
                                  key="docker.images.patterns") from exc
        for digest in digests:
            if not DIGEST.fullmatch(digest):
                raise ConfigError(f"image digest {digest!r} is not 'sha256:' and 64 hex digits",
                                  key="docker.images.digests")
        return cls(frozenset(normalise(n) for n in names), tuple(compiled), frozenset(digests))

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> ImagePolicy:
        """From a config section ``{names: [...], patterns: [...], digests: [...]}``."""
        unknown = set(section) - {"names", "patterns", "digests"}
        if unknown:
            raise ConfigError(f"unknown image policy keys: {', '.join(sorted(unknown))}",
                              key="docker.images")
        lists = {}
        for key in ("names", "patterns", "digests"):
            value = section.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError("expected a list of strings", key=f"docker.images.{key}")
            lists[key] = value
        return cls.build(lists["names"], lists["patterns"], lists["digests"])

    def refusal(self, image: ResolvedImage) -> str | None:
        """Why the image may not run here; None when it may."""
        if image.digests() & self.digests:
            return None
        names = image.names()
        if names & self.names:
            return None
        if any(p.fullmatch(n) for p in self.patterns for n in names):
            return None
        shown = image.requested if image.requested == image.id else \
            f"{image.requested} ({image.id[:19]}…)"
        return f"image {shown} is not on this node's allowlist"


def normalise(name: str) -> str:
    """``busybox`` → ``busybox:latest``; Docker Hub's implicit prefixes dropped."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return name


def _is_digest_ref(ref: str) -> bool:
    return "@" in ref or DIGEST.fullmatch(ref) is not None
