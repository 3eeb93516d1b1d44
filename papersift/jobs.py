"""`papersift update`: the daily job, safe to run from cron.

Steps, in order: fetch new papers from each configured source (`update_sources`), index them (full
text, BM25, embeddings, vectors), refresh recommendations, send due digests (and subscription
confirmations). A lock file in the data folder stops a second run from overlapping a first one; a
failed step is reported and the steps after it still run (a source that is down must not stop the
digests of papers already in the catalog). Every step is itself resumable, so the next run picks up
whatever this one could not finish.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from papersift.errors import Conflict, PapersiftError

try:
    import fcntl
except ImportError:  # not POSIX: no lock; don't run two updates at once
    fcntl = None


@dataclass
class StepResult:
    name: str
    ok: bool
    summary: str
    seconds: float


@dataclass
class UpdateReport:
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "steps": [vars(s) for s in self.steps]}


@contextlib.contextmanager
def update_lock(data_dir: Path) -> Iterator[None]:
    """Hold the update lock for the duration, or raise Conflict at once if another run holds it.
    The kernel drops the lock when the process dies, so a crashed run never leaves it stuck."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(data_dir / "update.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict("another `papersift update` is running", hint="wait for it to finish") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def parse_sources(text: str) -> list[tuple[str, str]]:
    """`update_sources` as (source, target) pairs: "arxiv-rss:cs.CL+cs.LG hf-daily" →
    [("arxiv-rss", "cs.CL+cs.LG"), ("hf-daily", "")]."""
    out = []
    for item in (text or "").split():
        name, _, target = item.partition(":")
        out.append((name, target))
    return out


def run_steps(steps: list[tuple[str, Callable[[], str]]], on_step: Callable[[StepResult], None] | None = None
              ) -> UpdateReport:
    report = UpdateReport()
    for name, step in steps:
        t = time.perf_counter()
        try:
            result = StepResult(name, True, step(), 0.0)
        except PapersiftError as e:
            result = StepResult(name, False, f"{e.message}" + (f" ({e.hint})" if e.hint else ""), 0.0)
        except Exception as e:  # one broken step must not stop the rest; the trace goes to the report
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            result = StepResult(name, False, f"unexpected error: {last}", 0.0)
        result.seconds = round(time.perf_counter() - t, 2)
        report.steps.append(result)
        if on_step:
            on_step(result)
    return report


def update_steps(store, settings, *, sources: list[tuple[str, str]] | None = None,
                 extra: list[tuple[str, Callable[[], str]]] = ()) -> list[tuple[str, Callable[[], str]]]:
    """The daily job's steps over `store`: one per source, then indexing, then `extra` (recommendations,
    digests) in order."""
    from papersift.index.build import build_index
    from papersift.index.embed import create_embedder
    from papersift.ingest import get_source
    from papersift.ingest.runner import run_source

    steps: list[tuple[str, Callable[[], str]]] = []
    for name, target in (sources if sources is not None else parse_sources(settings.update_sources)):
        def fetch(name=name, target=target) -> str:
            return run_source(store, get_source(name), target, settings).summary()
        steps.append((f"fetch {name}" + (f" {target}" if target else ""), fetch))

    def index() -> str:
        embedder = create_embedder(settings.embedder, settings.resolved_data_dir / "models",
                                   api_key=settings.embedder_api_key)
        return build_index(store, embedder, settings.resolved_data_dir).summary()
    steps.append(("index", index))
    steps.extend(extra)
    return steps


def feed_picks(store, settings):
    """Personal picks for digests: the top of each reader's "For you" feed (rank/feed.py)."""
    from papersift.rank.feed import FeedService
    from papersift.rank.service import Discovery

    feed = FeedService(store, Discovery(store, settings.resolved_data_dir, settings.embedder,
                                        api_key=settings.embedder_api_key))

    def picks(user_id: int, since, limit: int):
        page = feed.feed(store.get_user(user_id), limit=limit)
        return [] if page.cold else page.hits
    return picks


def recommend_step(store, settings) -> Callable[[], str]:
    """Refit the recommendation model on every reader's library (rank/personal.py)."""
    def run() -> str:
        from papersift.index.build import model_key
        from papersift.rank.personal import refresh_model
        from papersift.rank.service import Discovery

        discovery = Discovery(store, settings.resolved_data_dir, settings.embedder, api_key=settings.embedder_api_key)
        if not discovery.has_vectors or discovery.embedder is None:
            return "no embeddings yet: run the index step first"
        return refresh_model(store, settings.resolved_data_dir, model_key(discovery.embedder), discovery.embedder.dim)
    return run


def digest_step(store, settings, *, folder=None, base_url: str | None = None) -> Callable[[], str]:
    """Send due confirmation emails and digests (to `folder` as .eml files instead, when given)."""
    def run() -> str:
        from papersift.notify.mail import open_mailer
        from papersift.notify.send import send_due

        if folder is None and not settings.smtp_host:
            pending = len(store.subscriptions("pending")) + len(store.subscriptions("active"))
            return f"mail is not configured (smtp_host): {pending} subscription(s) wait"
        with open_mailer(settings, folder=folder) as mailer:
            report = send_due(store, settings, mailer, picks=feed_picks(store, settings), base_url=base_url)
        summary = (f"{report.confirmations} confirmation(s), {report.digests} digest(s) sent, {report.empty} with "
                   f"nothing new, {report.failed} failed, {report.deferred} deferred, {report.retried} retried")
        if not report.ok:
            raise PapersiftError(f"{report.stopped} ({summary})", hint=report.hint)
        return summary
    return run
