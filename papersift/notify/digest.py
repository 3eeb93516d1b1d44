"""Building a digest: which papers one subscriber gets this period. Pure: the sending run (send.py)
gathers the inputs from the catalog and the rankers, and this decides.

A digest has two sections: the reader's personal picks (when they have an account and a recommender
is configured) and the trending papers in their categories (every category when they chose none).
It never holds a paper that an earlier digest to the same subscriber held, nor one the reader already
upvoted, saved, dismissed or opened; trending papers must also be listed after the last day the
previous digest covered. A digest with nothing left is not sent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from papersift.errors import BadInput
from papersift.models import Hit, Paper

FREQUENCIES = ("daily", "weekly")
PERIOD_DAYS = {"daily": 1, "weekly": 7}


@dataclass(frozen=True)
class DigestItem:
    paper: Paper
    reason: str = ""


@dataclass(frozen=True)
class Digest:
    """One subscriber's mail for one period."""

    email: str
    frequency: str
    categories: tuple[str, ...]
    period: str
    through: dt.date | None  # the last listing day the trending section covers
    window: str  # the trending window it was ranked in: day, week or month
    picks: tuple[DigestItem, ...] = ()
    trending: tuple[DigestItem, ...] = ()

    @property
    def items(self) -> tuple[DigestItem, ...]:
        return self.picks + self.trending

    @property
    def paper_ids(self) -> list[int]:
        return [i.paper.id for i in self.items if i.paper.id is not None]

    @property
    def is_empty(self) -> bool:
        return not self.items


def period_key(frequency: str, now: dt.datetime) -> str:
    """The period `now` falls in, as the mailings table keys it: the UTC day for a daily digest
    (2026-07-01), the ISO week for a weekly one (2026-W27)."""
    day = _utc(now).date()
    if frequency == "daily":
        return day.isoformat()
    if frequency == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    raise BadInput(f"frequency must be one of {', '.join(FREQUENCIES)}, not {frequency!r}")


def pick_window(frequency: str, after: dt.date | None, latest: dt.date) -> str:
    """The trending window to rank this digest in: the reader's period (a day or a week), widened to
    reach back to the day after the previous digest when runs were skipped, up to a month."""
    days = PERIOD_DAYS[frequency] if frequency in PERIOD_DAYS else 1
    gap = (latest - after).days if after is not None else days
    for window, length in (("day", 1), ("week", 7), ("month", 30)):
        if length >= max(gap, days):
            return window
    return "month"


def merge_hits(lists: Iterable[Sequence[Hit]]) -> list[Hit]:
    """Several trending lists (one per category) as one, best first: a paper in two of them once, with
    its best score. Scores from the same window and day are comparable, so this is the trending list
    of the union of the categories."""
    best: dict[str, Hit] = {}
    for hits in lists:
        for hit in hits:
            if hit.paper_id not in best or hit.score > best[hit.paper_id].score:
                best[hit.paper_id] = hit
    return sorted(best.values(), key=lambda h: (-h.score, h.paper_id))


def build_digest(email: str, frequency: str, categories: Sequence[str], period: str, *,
                 trending: Sequence[Hit], papers: Mapping[str, Paper], picks: Sequence[Hit] = (),
                 exclude: Iterable[int] = (), after: dt.date | None = None, through: dt.date | None = None,
                 window: str = "day", limit: int = 10) -> Digest:
    """The digest of one subscriber: up to `limit` papers, personal picks first (at most half of them
    when there are trending papers to fill the rest), then trending ones.

    `trending` and `picks` are ranked hits (best first) whose paper_id is a paper's public ref;
    `papers` maps those refs to the papers (a hit without one is skipped); `exclude` holds row ids
    never to mail (earlier digests, what the reader already acted on); `after` drops trending papers
    listed on or before that day (the previous digest covered them)."""
    if limit < 1:
        raise BadInput("a digest holds at least one paper", hint="set digest_papers to 1 or more")
    seen = {int(i) for i in exclude}

    def take(hits: Sequence[Hit], n: int, fresh_only: bool) -> list[DigestItem]:
        out: list[DigestItem] = []
        for hit in hits:
            if len(out) >= n:
                break
            paper = papers.get(hit.paper_id)
            if paper is None or paper.id is None or paper.id in seen or paper.withdrawn:
                continue
            day = paper.listed or paper.submitted
            if fresh_only and after is not None and (day is None or day <= after):
                continue
            seen.add(paper.id)
            out.append(DigestItem(paper, hit.reason))
        return out

    trending_fresh = take(trending, limit, fresh_only=True)
    for item in trending_fresh:  # put them back: picks decide first, then trending fills
        seen.discard(item.paper.id)
    pick_share = limit - min(len(trending_fresh), limit // 2) if trending_fresh else limit
    chosen_picks = take(picks, pick_share, fresh_only=False)
    chosen_trending = take(trending, limit - len(chosen_picks), fresh_only=True)
    return Digest(email=email, frequency=frequency, categories=tuple(categories), period=period, through=through,
                  window=window, picks=tuple(chosen_picks), trending=tuple(chosen_trending))


def _utc(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.timezone.utc) if at.tzinfo is None else at.astimezone(dt.timezone.utc)
