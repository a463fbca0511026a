"""Signing webhook bodies, and the check a receiver makes (documented in docs/sinks.md).

The signature is HMAC-SHA256 with the endpoint's secret over
``<timestamp>.<raw body>``, sent as ``X-Leadscore-Signature: v1=<hex>`` with
``X-Leadscore-Timestamp: <unix seconds>``. Including the timestamp lets a
receiver refuse old, replayed requests.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Leadscore-Signature"
TIMESTAMP_HEADER = "X-Leadscore-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_S = 300


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def signature_is_valid(
    secret: bytes,
    timestamp: str,
    signature: str,
    body: bytes,
    now: float,
    tolerance: int = TOLERANCE_S,
) -> bool:
    """What a receiver checks: a fresh timestamp and a matching signature."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)
