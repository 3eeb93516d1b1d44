"""A polite HTTP client for arXiv and friends: one connection, a pause between requests, retries
on 429/503 and dropped connections that honour Retry-After, and clear errors when a source fails."""

from __future__ import annotations

import email.utils
import time
from typing import Callable, Mapping

import httpx

from papersift.errors import SourceError

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_WAIT = 600.0  # never sleep longer than this for one Retry-After


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class PoliteClient:
    """GET with at least `delay` seconds between requests on a single keep-alive connection.

    `sleep` and `clock` are injectable so tests can check the waits without waiting."""

    def __init__(self, *, delay: float = 3.0, retries: int = 5, timeout: float = 60.0,
                 user_agent: str = "papersift", sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, backoff: float = 5.0):
        self.delay = delay
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._last: float | None = None
        self.waits: list[float] = []  # every pause taken, for reporting and tests
        self._client = httpx.Client(
            timeout=timeout,
            headers={"User-Agent": user_agent},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            follow_redirects=True,
        )

    @classmethod
    def from_settings(cls, settings, **overrides) -> "PoliteClient":
        kwargs = dict(delay=settings.http_delay, retries=settings.http_retries,
                      timeout=settings.http_timeout, user_agent=settings.user_agent)
        kwargs.update(overrides)
        return cls(**kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "PoliteClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.waits.append(seconds)
            self._sleep(seconds)

    def _wait_turn(self) -> None:
        if self._last is not None:
            self._pause(self.delay - (self._clock() - self._last))

    def get(self, url: str, params: Mapping[str, str] | None = None, *, ok_statuses: tuple[int, ...] = ()) -> httpx.Response:
        """The response to a GET; retried on 429/5xx and connection errors, then SourceError.

        A 4xx other than 429 is returned when listed in `ok_statuses` (e.g. the arXiv API answers
        malformed queries with 400 and an Atom error feed worth parsing), else raised as SourceError."""
        attempt = 0
        while True:
            self._wait_turn()
            try:
                response = self._client.get(url, params=params)
                error = None
            except httpx.TransportError as e:
                response, error = None, e
            finally:
                self._last = self._clock()
            if response is not None and response.status_code < 400:
                return response
            if response is not None and response.status_code in ok_statuses:
                return response
            retryable = error is not None or response.status_code in RETRY_STATUSES
            if not retryable or attempt >= self.retries:
                if error is not None:
                    raise SourceError(f"cannot reach {url}: {error.__class__.__name__}: {error}") from None
                snippet = response.text[:200].strip().replace("\n", " ")
                raise SourceError(
                    f"{url} answered HTTP {response.status_code} after {attempt + 1} tries: {snippet}",
                    hint="the source may be down or rate-limiting; try again later (the ingest resumes)",
                )
            attempt += 1
            wait = None
            if response is not None:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is None:
                wait = self.backoff * 2 ** (attempt - 1)
            self._pause(min(wait, MAX_WAIT))
