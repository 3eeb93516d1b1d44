"""Signed, expiring tokens for links that act without a log-in: confirm a subscription, unsubscribe
(RFC 8058 one-click), and a reader's private feed. Pure: HMAC-SHA256 under the site key.

A token is `<payload>.<expiry>.<signature>` in URL-safe base64; the signature covers a purpose too,
so a token made to unsubscribe cannot confirm. The web and notify packages both use it (they may not
import each other), with the key from `site_key`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from papersift.errors import BadInput


def site_key(settings, store) -> str:
    """The key that signs the site's tokens: the `secret_key` setting, else one kept in the catalog."""
    return settings.secret_key or store.secret("site-key")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, purpose: str, body: str) -> str:
    return _b64(hmac.new(key.encode(), f"{purpose}|{body}".encode(), hashlib.sha256).digest())


def sign(key: str, purpose: str, payload: dict, ttl: float | None = None, now: float | None = None) -> str:
    """A token carrying `payload` for `purpose`, valid for `ttl` seconds (None: no expiry)."""
    expiry = "0" if ttl is None else str(int((now if now is not None else time.time()) + ttl))
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()) + "." + expiry
    return body + "." + _mac(key, purpose, body)


def verify(key: str, purpose: str, token: str, now: float | None = None) -> dict:
    """The payload of a valid token; BadInput (400) for a forged, altered, expired or other-purpose one."""
    try:
        data, expiry, mac = token.split(".")
        good = hmac.compare_digest(_mac(key, purpose, f"{data}.{expiry}"), mac)
        payload = json.loads(_unb64(data)) if good else None
        ends = int(expiry)
    except (ValueError, TypeError):
        raise BadInput("this link is not valid", hint="use the link from your latest email") from None
    if payload is None or not isinstance(payload, dict):
        raise BadInput("this link is not valid", hint="use the link from your latest email")
    if ends and (now if now is not None else time.time()) > ends:
        raise BadInput("this link has expired", hint="subscribe again to get a fresh one")
    return payload
