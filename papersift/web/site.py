"""The site's shared state: settings, the catalog, discovery (search + related), the signing key,
rate limiters and a short-lived cache of trending lists. One per app (per worker process)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from papersift.models import User
from papersift.rank.service import Discovery
from papersift.store.base import Store
from papersift.web.auth import RateLimiter

TRENDING_TTL = 30.0  # seconds a computed list is reused: votes change counts at once, order within this


class TTLCache:
    def __init__(self, ttl: float, size: int = 512):
        self.ttl, self.size = ttl, size
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key, make: Callable[[], Any]):
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        value = make()
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class Site:
    settings: Any
    store: Store
    discovery: Discovery
    key: str  # signs CSRF tokens (and, in notify, unsubscribe links)
    base_url: str = ""
    secure_cookies: bool = False
    session_days: int = 30
    feed: Any = None  # rank.feed.FeedService
    csrf_exempt: frozenset = frozenset()  # paths whose POSTs a signed token authorises (one-click unsubscribe)

    def __post_init__(self):
        self.login_limit = RateLimiter(10, 300, "log-in attempts")
        self.signup_limit = RateLimiter(10, 3600, "sign-ups from this address")
        self.vote_limit = RateLimiter(120, 60, "votes and saves")
        self.trending_cache = TTLCache(TRENDING_TTL)

    def session_expiry(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=self.session_days)


@dataclass
class Viewer:
    """Who is asking: the user (None for a visitor) and how they proved it."""

    user: User | None = None
    via: str = ""  # "session", "token" or ""
    session_hash: str | None = None
    csrf: str = ""  # the token this viewer's forms must carry
