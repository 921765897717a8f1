"""Attacks on Ferry's trust boundaries (docs/SECURITY.md), each asserting the refusal and
that nothing changed."""
