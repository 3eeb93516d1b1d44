"""Trending: the Daily / Weekly / Monthly papers pages, ranked by what readers do, with gravity.

A window is `day` (the papers listed on that day), `week` (the 7 days ending it) or `month` (the 30
days ending it): calendar days that end on the page's day, so every page has a fixed membership and a
date in its URL. Each paper in it gets, from READERS (never events) counted from the window's first
day to `now`:

    points = 1.0·upvoters + 1.0·savers + 0.5·ln(1 + viewers) + 1.0·ln(1 + Hugging Face upvotes)
             − 0.5·dismissers + 0.5·prior                                      (floored at 0)
    score  = points / (1 + age / (0.5 · window))^1.5

`age` runs from 00:00 UTC of the paper's listing day to `now`; `window` is the window's length; both
in hours. Why these numbers (`TrendingParams` holds them):

- One account is one voice. The store counts distinct readers per kind (an upvote, a save or a
  dismissal is a state kept once; views repeat, so they count one per reader), and the scorer takes
  those counts, so 200 upvotes or 1,000 page loads from one account weigh as one reader.
- An upvote is the public endorsement, the unit. A save costs the reader more (it lands in their
  library) but is private; it weighs the same, and a reader who does both counts twice.
- Views are cheap, noisy and feed back on themselves (a paper high on the page gets more of them),
  so they are log-damped: 100 viewers ≈ 2.3 upvotes.
- Hugging Face upvotes (`signals["hf_upvotes"]`) are votes from a larger crowd with its own
  rich-get-richer loop: log-damped too, 10 → 2.4 points, 100 → 4.6, 1,000 → 6.9.
- A dismissal is mostly "not for me", not a verdict: half an upvote against. Points never go below 0:
  dismissals can cancel a paper's votes and prior, not rank it below a paper with nothing at all.
- `prior` in [0, 1] is a content prior (`content_prior`: how close the paper is to what readers
  upvoted or saved in the past week). At 0.5 it is worth less than one upvote, so a paper with a vote
  outranks an unvoted one of the same age, but it orders the unvoted ones: the day page is sorted
  before anyone has voted, and new papers get a fair chance to be seen.
- Gravity is Hacker News' `points / (age + 2)^1.8`, with age measured in half-windows instead of
  hours, since our pages span a day to a month: when a week page closes, a paper from its first day
  needs 3.6× the points of one from its last day (4.7× on the month page). Inside a day page every
  paper has the same age, so gravity does not reorder it. Votes are not aged one by one (the store
  gives counts, not times): the paper's age stands in for theirs, so fresh votes on a new paper
  beat as many votes on an old one.

`now` defaults to the earlier of the wall clock and the window's end, so an archive page ranks as it
stood when its window closed and does not change when looked at later. Ties go to the smaller id.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from papersift.errors import BadInput
from papersift.models import Hit, Paper
from papersift.store.base import Store

WINDOW_DAYS = {"day": 1, "week": 7, "month": 30}
PRIOR_LOOKBACK = dt.timedelta(days=7)  # "what readers upvoted in the past week"
PAGE = 5000  # papers fetched per query when gathering a window
ONE_DAY = dt.timedelta(days=1)
_KINDS = ("upvote", "save", "view", "dismiss")
_NONE: Mapping[str, int] = {}

# (candidate row ids, since, until) -> {row id: prior in [0, 1]}; e.g. functools.partial(content_prior, store, model, dim)
PriorFn = Callable[[Sequence[int], dt.datetime, dt.datetime], Mapping[int, float]]


@dataclass(frozen=True)
class TrendingParams:
    upvote: float = 1.0
    save: float = 1.0
    view: float = 0.5  # × ln(1 + viewers)
    hf_upvote: float = 1.0  # × ln(1 + Hugging Face upvotes)
    dismiss: float = 0.5
    prior: float = 0.5  # × prior in [0, 1]: below one upvote
    gravity: float = 1.5
    scale: float = 0.5  # age is measured in this fraction of the window's length


def score_trending(papers: Iterable[Paper], engagement: Mapping[int, Mapping[str, int]], now: dt.datetime, *,
                   window_days: int = 1, prior: Mapping[int, float] | None = None,
                   params: TrendingParams = TrendingParams()) -> list[Hit]:
    """Hits for `papers`, best first, by the formula above. `engagement` is {row id: {kind: readers}}
    (Store.engagement), `prior` {row id: [0, 1]}. Pure: the same inputs give the same list."""
    now = _utc(now)
    prior = prior or {}
    scale_hours = params.scale * window_days * 24.0
    decay: dict[dt.date | None, float] = {}  # by listing day: a month page has ~30 of them
    scored = []
    for paper in papers:
        counts = engagement.get(paper.id) or _NONE
        up, saves, views, dismissals = [max(int(counts.get(k) or 0), 0) for k in _KINDS]
        hf = _hf_upvotes(paper)
        guess = min(max(float(prior.get(paper.id, 0.0)), 0.0), 1.0)
        points = (params.upvote * up + params.save * saves + params.view * math.log1p(views)
                  + params.hf_upvote * math.log1p(hf) - params.dismiss * dismissals + params.prior * guess)
        day = paper.listed or paper.submitted
        if day not in decay:
            decay[day] = (1.0 + _age_hours(day, now) / scale_hours) ** params.gravity
        score = max(points, 0.0) / decay[day]
        scored.append((-score, paper.ref, Hit(paper.ref, score, _reason(up, saves, views, hf, guess), paper)))
    scored.sort(key=lambda t: t[:2])
    return [hit for _, _, hit in scored]


def trending(store: Store, window: str, day: dt.date | None = None, *, category: str | None = None,
             limit: int = 50, offset: int = 0, now: dt.datetime | None = None, prior: PriorFn | None = None,
             params: TrendingParams = TrendingParams()) -> list[Hit]:
    """The papers of a window ending on `day` (default: the latest listed day), in `category` (any of a
    paper's categories) if given, best first. `prior`, if given, is asked for the content prior of the
    window's papers from the week before `now`."""
    days = _window_days(window)
    if limit < 0 or offset < 0:
        raise BadInput("limit and offset cannot be negative")
    day = day or latest_day(store, category)
    if day is None:
        return []
    first = window_start(window, day)
    end = _midnight(day + ONE_DAY)
    now = _utc(now) if now is not None else min(dt.datetime.now(dt.timezone.utc), end)
    papers = _listed(store, first, day, category)
    if not papers:
        return []
    ids = [p.id for p in papers]
    engagement = store.engagement(since=_midnight(first), until=now, paper_ids=ids)
    guesses = prior(ids, now - PRIOR_LOOKBACK, now) if prior is not None else None
    hits = score_trending(papers, engagement, now, window_days=days, prior=guesses, params=params)
    return hits[offset:offset + limit]


def window_start(window: str, day: dt.date) -> dt.date:
    """The first day of the `window` ending on `day` (inclusive)."""
    return day - dt.timedelta(days=_window_days(window) - 1)


def _window_days(window: str) -> int:
    if window not in WINDOW_DAYS:
        raise BadInput(f"unknown trending window {window!r}", hint="use one of: " + ", ".join(WINDOW_DAYS))
    return WINDOW_DAYS[window]


def content_prior(store: Store, model: str, dim: int, paper_ids: Sequence[int], since: dt.datetime,
                  until: dt.datetime, *, top_k: int = 3) -> dict[int, float]:
    """{row id: [0, 1]}: how close each paper is to what readers upvoted or saved in [since, until).

    A candidate's prior is the mean of its `top_k` best cosines to those papers (itself excluded), each
    cosine scaled by r / (r + 1) for a paper that r readers kept: a paper one reader liked pulls half as
    hard as one many liked. Top-k rather than a centroid: a site's readers like several topics, and the
    centroid of two topics is close to neither. Empty when nobody voted or nothing is embedded.
    """
    liked = {pid: c.get("upvote", 0) + c.get("save", 0) for pid, c in store.engagement(since, until).items()}
    liked = {pid: n for pid, n in liked.items() if n > 0}
    if not liked or not paper_ids:
        return {}
    ids, vectors = store.paper_embeddings(model, [*liked, *paper_ids], dim)
    liked_ids, liked_rows = _rows(ids, np.fromiter(liked, dtype=np.int64))
    cand_ids, cand_rows = _rows(ids, np.asarray(paper_ids, dtype=np.int64))
    if not len(liked_ids) or not len(cand_ids):
        return {}
    readers = np.array([liked[int(i)] for i in liked_ids], dtype=np.float32)
    kept = vectors[liked_rows].T * (readers / (readers + 1.0))  # [dim, liked], columns weighted
    k = min(top_k, len(liked_ids))
    out: dict[int, float] = {}
    for at in range(0, len(cand_ids), 2048):  # bounded memory: 2048 × liked floats at a time
        chunk = cand_ids[at:at + 2048]
        sims = vectors[cand_rows[at:at + 2048]] @ kept
        sims[chunk[:, None] == liked_ids[None, :]] = -np.inf  # a liked paper is not its own evidence
        top = np.partition(sims, len(liked_ids) - k, axis=1)[:, -k:]
        finite = np.isfinite(top)
        mean = np.where(finite, top, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
        out.update(zip(chunk.tolist(), np.clip(mean, 0.0, 1.0).tolist()))
    return out


def latest_day(store: Store, category: str | None = None) -> dt.date | None:
    """The most recent listing day in the catalog (in `category`), None when it has none."""
    return store.listed_days(None, category)[2]


def neighbour_days(store: Store, day: dt.date, category: str | None = None) -> tuple[dt.date | None, dt.date | None]:
    """(the previous, the next) day with papers listed (in `category`), for date navigation; None at an end."""
    before, after, _ = store.listed_days(day, category)
    return before, after


def _listed(store: Store, first: dt.date, last: dt.date, category: str | None) -> list[Paper]:
    """Every paper listed in [first, last], in pages (a month at 75k papers is ~7k of them)."""
    out: dict[int, Paper] = {}
    offset = 0
    while True:
        page = store.papers_listed(first, last, category, limit=PAGE, offset=offset)
        out.update((p.id, p) for p in page)
        if len(page) < PAGE:
            return list(out.values())
        offset += PAGE


def _rows(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the wanted ids that `ids` (sorted) holds, their row numbers)."""
    wanted = np.unique(wanted)
    if not len(ids):
        return wanted[:0], wanted[:0]
    pos = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    found = ids[pos] == wanted
    return wanted[found], pos[found]


def _hf_upvotes(paper: Paper) -> int:
    value = paper.signals.get("hf_upvotes") if paper.signals else None
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _age_hours(day: dt.date | None, now: dt.datetime) -> float:
    """Hours from 00:00 UTC of `day` (the listing day, else the submission day) to `now`; 0 without one."""
    return max((now - _midnight(day)).total_seconds() / 3600.0, 0.0) if day else 0.0


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def _utc(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.timezone.utc) if at.tzinfo is None else at.astimezone(dt.timezone.utc)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _reason(up: int, saves: int, views: int, hf: int, guess: float) -> str:
    parts = [_plural(up, "upvote")] if up else []
    parts += [_plural(saves, "save")] if saves else []
    parts += [f"viewed by {views}"] if views else []
    parts += [_plural(hf, "upvote") + " on Hugging Face"] if hf else []
    if not (up or saves or hf) and guess > 0:
        parts.append("close to what readers upvoted in the past week")
    if not (up or saves or views or hf):
        return "new: " + (parts[0] if parts else "no votes yet")
    return " · ".join(parts)
