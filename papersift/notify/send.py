"""The sending run (`papersift update` / a daily cron job): confirmation requests to new subscribers,
then the digests that are due, each at most once per subscriber and period, crash or no crash.

    report = send_due(store, settings, mailer, picks=recommender_picks, base_url="https://papers.example.org")

Double opt-in: a subscription starts `pending`; the run emails it a signed confirmation link (at most
once a day, at most CONFIRM_ASKS times in any CONFIRM_WINDOW, so an address someone else typed is not
pestered, while a reader who comes back months later to subscribe again is asked again);
the reader confirms on the site (web/digest_pages.py) and the subscription turns `active`.

Exactly once per (subscription, period). A period is the UTC day of a daily digest or the ISO week
of a weekly one. For each due digest the run, in this order:

 1. builds the digest and renders the exact message (a deterministic Message-ID: an HMAC of
    subscription, kind and period);
 2. CLAIMS (subscription, kind, period) in the store: one insert, keyed on those three, that holds the
    message's bytes, the papers in it and a lease naming this run. Only one run can ever claim a
    period, so two runs never build two different digests for it;
 3. hands the message to the SMTP server;
 4. the moment the server has accepted it, marks the claim SENT (which also frees its bytes).

A crash between 2 and 4 leaves the claim unfinished. The next run resends THAT claim's stored
message (same bytes, same Message-ID) before it looks at anything new: a digest that was claimed
but not sent is never lost, and a period that has a claim never gets a second, different digest.
A Python-level interruption (Ctrl-C, SystemExit, an exception) is caught on the way out: a message the
server accepted is marked sent, one it did not is released so that the rerun sends it at once. A
hard crash (kill -9, power loss) cannot clean up: its claims are resent once their lease (LEASE)
runs out; a run started earlier skips them (counted `busy`) rather than race a run that may be alive.

The one window that cannot be closed: the SMTP server has accepted the message (its "250" after
DATA) and the process dies, or the connection drops so that the reply never arrives, before step 4
commits. Nothing can know whether that message went out, so the rerun sends it again: the reader may
get the same message twice. The window is kept as small as it can be: step 4 is the very next
statement after the server's reply, one small transaction, with no other work in between and the
connection left open until after it; and the copy carries the same Message-ID, which lets receiving
systems (Gmail among them) drop it as a duplicate. A digest never goes out twice with different
contents, and a crash never makes one go missing.

SMTP failures: a temporary one (connection refused or cut, 4xx) is retried after `backoff` delays
(exponential; injectable, with `sleep`, for tests); if it outlasts them, the claim is released for
the next run, and when the whole server is unreachable the run stops rather than queue up behind
it (`report.stopped`). A permanent refusal of one recipient (5xx) is recorded on its claim (status
failed, not retried) and the run goes on with the others; one that concerns the whole server (a
refused log-in, no TLS) stops the run.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Callable, Sequence

from papersift.errors import BadInput, ConfigError
from papersift.models import Hit, Paper
from papersift.notify.digest import PERIOD_DAYS, Digest, build_digest, merge_hits, period_key, pick_window
from papersift.notify.mail import Mailer, MailError, safe_name
from papersift.notify.render import Links, confirmation_message, digest_message, parse_message
from papersift.rank.trending import latest_day, trending, window_start
from papersift.signing import site_key
from papersift.store.base import Store, Subscription

log = logging.getLogger(__name__)

# picks(user_id, since, limit) -> personal recommendations, best first (the recommender's Hits)
PicksFn = Callable[[int, dt.datetime, int], Sequence[Hit]]

DEFAULT_BACKOFF = (2.0, 4.0, 8.0, 16.0, 32.0)  # seconds between tries: 5 retries over about a minute
LEASE = dt.timedelta(minutes=10)  # > one try (timeout) + the longest backoff: a live run renews it before each
CONFIRM_EVERY = dt.timedelta(days=1)
CONFIRM_ASKS = 3
CONFIRM_WINDOW = dt.timedelta(days=30)
ALL = 1_000_000  # trending scores every paper of its window anyway: take them all, filter here
PAGE = 5000
MAX_PROBLEMS = 50


@dataclass
class SendReport:
    confirmations: int = 0  # confirmation requests sent
    digests: int = 0  # digests sent
    empty: int = 0  # due, but nothing new: not sent
    failed: int = 0  # refused for good (recorded on the mailing, not retried)
    retried: int = 0  # tries repeated after a temporary failure
    deferred: int = 0  # left for the next run: a temporary failure outlasted the retries
    resumed: int = 0  # unfinished claims of an earlier run, sent by this one (counted in the two above too)
    busy: int = 0  # claimed by another run whose lease is still live
    stopped: str | None = None  # why the run stopped early: the mail server is down, refuses the log-in …
    hint: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.stopped is None

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_base_url(settings, base_url: str | None = None) -> str:
    """The site address links in emails start with: `base_url` if given, else the setting."""
    url = (base_url or settings.base_url or "").strip().rstrip("/")
    if not url:
        raise ConfigError("emails need the site's public address for their links",
                          hint="set base_url (PAPERSIFT_BASE_URL), e.g. https://papers.example.org")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url must start with http:// or https://, not {url!r}")
    return url


def send_due(store: Store, settings, mailer: Mailer, now: dt.datetime | None = None, *, picks: PicksFn | None = None,
             base_url: str | None = None, backoff: Sequence[float] = DEFAULT_BACKOFF,
             sleep: Callable[[float], None] = time.sleep, confirm_asks: int = CONFIRM_ASKS,
             lease: dt.timedelta = LEASE) -> SendReport:
    """Send what is due at `now` (default: the clock): confirmation requests to pending subscriptions,
    then the digests of active ones, resuming first whatever an interrupted run left unfinished.
    The caller owns (and closes) the mailer. Mail failures are in the report, not raised."""
    run = _Run(store, settings, now, picks=picks, base_url=base_url, mailer=mailer, backoff=backoff, sleep=sleep,
               confirm_asks=confirm_asks, lease=lease)
    return run.send_all()


def preview(store: Store, settings, who: str | int, now: dt.datetime | None = None, *, picks: PicksFn | None = None,
            base_url: str | None = None) -> EmailMessage:
    """The digest `who` (a username, user id or email address) would get if the run went now, as the
    message it would send; nothing is recorded. A user without a subscription gets the default one (daily,
    every category). A digest with nothing new is previewed anyway, with an X-Papersift-Preview header
    saying it would not be sent."""
    run = _Run(store, settings, now, picks=picks, base_url=base_url)
    sub = _subscription_of(store, who)
    digest = run.build(sub, store.mailings(sub.id, "digest") if sub.id else [])
    msg = digest_message(digest, run.links, subscription_id=sub.id, sender=run.sender, date=run.now)
    msg["X-Papersift-Preview"] = "nothing new: this digest would not be sent" if digest.is_empty else "yes"
    return msg


def save_preview(message: EmailMessage, folder: str | Path) -> list[Path]:
    """Write a previewed message into `folder` as <name>.eml, <name>.html and <name>.txt; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = "digest-" + safe_name(str(message["To"] or "preview"))
    paths = [folder / f"{stem}.eml", folder / f"{stem}.html", folder / f"{stem}.txt"]
    paths[0].write_bytes(message.as_bytes())
    paths[1].write_text(message.get_body(preferencelist=("html",)).get_content(), encoding="utf-8")
    paths[2].write_text(message.get_body(preferencelist=("plain",)).get_content(), encoding="utf-8")
    return paths


def _subscription_of(store: Store, who: str | int) -> Subscription:
    ref: str | int = int(who) if isinstance(who, int) or str(who).isdigit() else str(who).strip()
    if isinstance(ref, str) and "@" in ref:
        sub = store.get_subscription(ref)
        if sub is not None:
            return sub
    user = store.get_user(ref)  # NotFound names what was asked for
    sub = store.get_subscription(user.email) if user.email else None
    if sub is not None:
        return sub
    if not user.email:
        raise BadInput(f"{user.username} has no email address, so gets no digest",
                       hint="preview a user with an email address, or a subscriber's address")
    return Subscription(id=0, email=user.email, frequency="daily", categories=(), status="preview", user_id=user.id,
                        created_at="", confirmed_at=None, last_sent_at=None)


def _parse_ts(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    at = dt.datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)


class _Run:
    def __init__(self, store: Store, settings, now: dt.datetime | None, *, picks: PicksFn | None = None,
                 base_url: str | None = None, mailer: Mailer | None = None, backoff: Sequence[float] = DEFAULT_BACKOFF,
                 sleep: Callable[[float], None] = time.sleep, confirm_asks: int = CONFIRM_ASKS,
                 lease: dt.timedelta = LEASE):
        now = now or dt.datetime.now(dt.timezone.utc)
        self.now = now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)
        self._started = time.monotonic()
        self.store, self.mailer, self.picks = store, mailer, picks
        self.links = Links(resolve_base_url(settings, base_url), site_key(settings, store))
        self.sender = settings.mail_from
        self.limit = int(settings.digest_papers)
        if self.limit < 1:
            raise ConfigError(f"digest_papers must be 1 or more, not {self.limit}")
        self.backoff, self.sleep, self.confirm_asks, self.lease = tuple(backoff), sleep, confirm_asks, lease
        self.owner = uuid.uuid4().hex  # this run, in the leases it holds
        self.report = SendReport()
        self.latest = latest_day(store)
        self._trending: dict[tuple, list[Hit]] = {}
        self._papers: dict[tuple, dict[str, Paper]] = {}

    def clock(self) -> dt.datetime:
        """`now` moved on by the time this run has taken: leases and send times follow the real clock."""
        return self.now + dt.timedelta(seconds=time.monotonic() - self._started)

    # -- the run -------------------------------------------------------------------------------
    def send_all(self) -> SendReport:
        for sub in self.store.subscriptions("pending"):
            if self.report.stopped:
                break
            self.confirm(sub)
        for sub in self.store.subscriptions("active"):
            if self.report.stopped:
                break
            self.digest(sub)
        r = self.report
        log.info("mail run: %d confirmations, %d digests, %d with nothing new, %d failed, %d deferred, %d retries%s",
                 r.confirmations, r.digests, r.empty, r.failed, r.deferred, r.retried,
                 f"; stopped: {r.stopped}" if r.stopped else "")
        return r

    def _resume_unfinished(self, sub: Subscription, rows: list[dict]) -> None:
        for row in reversed(rows):  # oldest first
            if row["status"] == "claimed" and not self.report.stopped:
                self._claim_and_deliver(sub, row["kind"], row["period"], row["message_id"], None)

    def confirm(self, sub: Subscription) -> None:
        rows = self.store.mailings(sub.id, "confirm")
        self._resume_unfinished(sub, rows)
        recent = [r for r in rows if _parse_ts(r["claimed_at"]) > self.now - CONFIRM_WINDOW]
        if self.report.stopped or len(recent) >= self.confirm_asks:
            return
        if rows and _parse_ts(rows[0]["claimed_at"]) > self.now - CONFIRM_EVERY:
            return  # asked within the last day
        period = self.now.date().isoformat()
        msg = confirmation_message(sub.id, sub.email, sub.frequency, sub.categories, period, self.links,
                                   sender=self.sender, date=self.clock())
        self._claim_and_deliver(sub, "confirm", period, msg["Message-ID"], msg)

    def digest(self, sub: Subscription) -> None:
        current = self.store.get_subscription(sub.email)  # it may have been unsubscribed since the run began
        if current is None or current.status != "active" or current.id != sub.id:
            return
        rows = self.store.mailings(sub.id, "digest")
        self._resume_unfinished(sub, rows)
        period = period_key(sub.frequency, self.now)
        if self.report.stopped or any(r["period"] == period for r in rows):
            return  # this period's digest is sent, failed for good, or was just resumed
        digest = self.build(sub, rows, period)
        if digest.is_empty:
            self.report.empty += 1
            return
        msg = digest_message(digest, self.links, subscription_id=sub.id, sender=self.sender, date=self.clock())
        self._claim_and_deliver(sub, "digest", period, msg["Message-ID"], msg, digest)

    # -- building ------------------------------------------------------------------------------
    def build(self, sub: Subscription, rows: list[dict], period: str | None = None) -> Digest:
        """The digest `sub` gets now: `rows` are its digest mailings, newest first (store.mailings)."""
        period = period or period_key(sub.frequency, self.now)
        previous = next((r for r in rows if r["status"] in ("sent", "claimed") and r["through"]), None)
        after = dt.date.fromisoformat(previous["through"]) if previous else None
        exclude = self.store.mailed_paper_ids(sub.id) if sub.id else set()
        pick_hits: Sequence[Hit] = ()
        papers: dict[str, Paper] = {}
        if sub.user_id is not None:
            # what the reader already upvoted, saved, dismissed or opened is no news to them
            exclude |= {pid for _, pid, _, _ in self.store.interactions(user_id=sub.user_id)}
            if self.picks is not None:
                since = (_parse_ts(sub.last_sent_at) or _parse_ts(sub.confirmed_at)
                         or self.now - dt.timedelta(days=PERIOD_DAYS.get(sub.frequency, 1)))
                pick_hits = list(self.picks(sub.user_id, since, self.limit * 3))
                for hit in pick_hits:
                    paper = self.store.find_paper(hit.paper_id)
                    if paper is not None:
                        papers[hit.paper_id] = paper
        hits: list[Hit] = []
        window = "day"
        if self.latest is not None:
            window = pick_window(sub.frequency, after, self.latest)
            categories = sub.categories or (None,)
            hits = merge_hits(self._trending_hits(window, c) for c in categories)
            for c in categories:
                papers.update(self._window_papers(window, c))
        return build_digest(sub.email, sub.frequency, sub.categories, period, trending=hits, papers=papers,
                            picks=pick_hits, exclude=exclude, after=after, through=self.latest, window=window,
                            limit=self.limit)

    def _trending_hits(self, window: str, category: str | None) -> list[Hit]:
        key = (window, category)
        if key not in self._trending:  # the same for every subscriber of this run
            self._trending[key] = trending(self.store, window, self.latest, category=category, limit=ALL, now=self.now)
        return self._trending[key]

    def _window_papers(self, window: str, category: str | None) -> dict[str, Paper]:
        key = (window, category)
        if key not in self._papers:
            out: dict[str, Paper] = {}
            first, offset = window_start(window, self.latest), 0
            while True:
                page = self.store.papers_listed(first, self.latest, category, limit=PAGE, offset=offset)
                out.update((p.ref, p) for p in page)
                if len(page) < PAGE:
                    break
                offset += PAGE
            self._papers[key] = out
        return self._papers[key]

    # -- claiming and sending ------------------------------------------------------------------
    def _claim_and_deliver(self, sub: Subscription, kind: str, period: str, message_id: str,
                           msg: EmailMessage | None, digest: Digest | None = None) -> None:
        """Claim (sub, kind, period) with `msg` (None: only resume an unfinished claim) and send what the
        claim holds: `msg`, or the stored message of an earlier run's unfinished claim."""
        at = self.clock()
        claim = self.store.claim_mailing(
            sub.id, kind, period, self.owner, now=at, lease_until=at + self.lease, message_id=message_id,
            message=msg.as_bytes() if msg is not None else None,
            paper_ids=digest.paper_ids if digest else (), through=digest.through if digest else None)
        if claim is None:  # finished meanwhile, or another live run holds it
            row = self.store.get_mailing(sub.id, kind, period)
            if row is not None and row["status"] == "claimed":
                self.report.busy += 1
            return
        if claim["resumed"]:
            self.report.resumed += 1
            log.info("resending the unfinished %s %s of subscription %d", kind, period, sub.id)
        self._deliver(sub, claim)

    def _deliver(self, sub: Subscription, claim: dict) -> None:
        kind, period = claim["kind"], claim["period"]
        message = parse_message(claim["message"])
        delivered = False
        try:
            error: MailError | None = None
            for attempt in range(len(self.backoff) + 1):
                if attempt:
                    delay = self.backoff[attempt - 1]
                    log.warning("temporary mail failure (%s); try %d of %d in %.1f s", error.message, attempt + 1,
                                len(self.backoff) + 1, delay)
                    self.sleep(delay)
                    self.report.retried += 1
                    if not self.store.renew_mailing(sub.id, kind, period, self.owner, self.clock() + self.lease):
                        self.report.busy += 1  # our lease ran out and another run took it over
                        return
                try:
                    self.mailer.send(message)
                except MailError as e:
                    error = e
                    if e.temporary and attempt < len(self.backoff):
                        continue
                    break
                # Accepted by the server. Record it now, before anything else: this line to the commit in
                # finish_mailing is the window a hard crash can turn into a duplicate (module docstring).
                delivered = True
                self.store.finish_mailing(sub.id, kind, period, "sent", self.clock())
                if kind == "digest":
                    self.report.digests += 1
                else:
                    self.report.confirmations += 1
                log.info("sent the %s %s of subscription %d", kind, period, sub.id)
                return
            assert error is not None
            if error.temporary or error.server:
                self.store.release_mailing(sub.id, kind, period, self.owner, self.clock(), error.message)
                self.report.deferred += 1
                if error.server:
                    self.report.stopped, self.report.hint = error.message, error.hint
                    log.error("mail run stopped: %s", error.message)
            else:
                self.store.finish_mailing(sub.id, kind, period, "failed", self.clock(), error.message)
                self.report.failed += 1
                log.warning("the %s %s of subscription %d was refused: %s", kind, period, sub.id, error.message)
            if len(self.report.problems) < MAX_PROBLEMS:
                self.report.problems.append(f"{sub.email}: {error.message}")
        except BaseException:
            # Interrupted (Ctrl-C, SystemExit, a bug): leave the claim as truthful as we can, so a rerun
            # neither resends what the server took nor waits out the lease of what it did not.
            try:
                if delivered:
                    self.store.finish_mailing(sub.id, kind, period, "sent", self.clock())
                else:
                    self.store.release_mailing(sub.id, kind, period, self.owner, self.clock(), "interrupted")
            except Exception:  # the store itself is failing: the lease will lapse instead
                log.exception("could not record the %s %s of subscription %d", kind, period, sub.id)
            raise

