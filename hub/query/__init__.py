"""The query language: ``Client where type=1 AND (site=hq OR status<>offline)``,
``Job where status in (running, queued) and code matches "*.exr"``."""

from hub.query.parser import And, Comparison, Member, Node, Or, Query, parse

__all__ = ["And", "Comparison", "Member", "Node", "Or", "Query", "parse"]
