"""The signature a receiver checks: HMAC-SHA256 of the exact body, keyed by the webhook's
secret, sent as ``X-Ferry-Signature: sha256=<hex>`` (docs/WEBHOOKS.md shows the check)."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE = "X-Ferry-Signature"
EVENT = "X-Ferry-Event"
DELIVERY = "X-Ferry-Delivery"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
