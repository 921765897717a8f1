"""The Ferry agent: a long-running daemon that checks in with a hub and does its work."""
