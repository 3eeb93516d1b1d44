"""Who is asking, and may they: password hashes, log-in sessions, API tokens, CSRF tokens, rate limits.

  * Passwords: argon2id (argon2-cffi's defaults, RFC 9106's second recommended profile); a hash made
    with older parameters is replaced at the next log-in.
  * Sessions: a random 256-bit token in an HttpOnly, SameSite=Lax cookie; the catalog keeps only its
    SHA-256, so a copy of the database lets no one in, and log-out ends the session on the server.
  * API tokens: the same, sent as `Authorization: Bearer <token>`; shown once when made.
  * CSRF: every form and every cookie-authenticated unsafe request carries a token that is an HMAC of
    the browser's csrf cookie under the site key. A page on another site can neither read the cookie
    nor forge the HMAC; requests with a Bearer token carry no cookies and need none.
  * Rate limits: a sliding window per key (client address, account) in this process's memory; with
    several workers each keeps its own, so the effective limit is N times as loose.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

from papersift.errors import BadInput, TooManyRequests

SESSION_COOKIE = "papersift_session"
CSRF_COOKIE = "papersift_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TOKEN_PREFIX = "ps_"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher().hash(password)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise BadInput(f"a password needs at least {MIN_PASSWORD} characters", hint="a few words make a good one")
    if len(password) > MAX_PASSWORD:
        raise BadInput(f"a password can have at most {MAX_PASSWORD} characters")


def verify_password(stored: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, a new hash to store when the old one used weaker parameters)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _hasher()
    if not stored:
        hasher.hash("not a user")  # the same time with and without an account: no user probing
        return False, None
    try:
        hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False, None
    return True, (hasher.hash(password) if hasher.check_needs_rehash(stored) else None)


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the catalog keeps of a session or API token. A token has 256 random bits: a plain SHA-256
    is enough (a password hash's slowness protects guessable secrets, which these are not)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_token(key: str, cookie: str) -> str:
    return hmac.new(key.encode(), b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: str, cookie: str | None, sent: str | None) -> bool:
    if not cookie or not sent:
        return False
    return hmac.compare_digest(csrf_token(key, cookie), sent)


class RateLimiter:
    """At most `limit` events per `window` seconds per key; `hit` raises TooManyRequests past it."""

    def __init__(self, limit: int, window: float, what: str):
        self.limit, self.window, self.what = limit, window, what
        self._events: dict[str, deque] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                wait = int(events[0] + self.window - now) + 1
                raise TooManyRequests(f"too many {self.what}: try again in {wait} s")
            events.append(now)
            if len(self._events) > 100_000:  # forget idle keys so memory stays bounded
                for k in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]:
                    del self._events[k]

    def reset(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)
