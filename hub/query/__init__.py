"""The query language: ``Client where type=1 AND (site=hq OR status<>offline)``."""

from hub.query.parser import And, Comparison, Node, Or, Query, parse

__all__ = ["And", "Comparison", "Node", "Or", "Query", "parse"]
