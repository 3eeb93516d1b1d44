"""Hugging Face daily papers (`/api/daily_papers`, optionally `?date=YYYY-MM-DD`): the arXiv papers the
HF community featured on a day, with upvotes, linked GitHub repos and AI keywords as signals.

The reply is a bare JSON array of items `{paper: {...}, publishedAt, title, summary, numComments,
submittedBy, organization, ...}`. HF adds fields often, so each item's JSON text is kept in `Paper.raw`.

Dates, from real replies: `paper.publishedAt` is the arXiv date (midnight UTC of the arXiv day) and
`paper.submittedOnDailyAt` the day the paper was featured on HF (the `?date=` asked for). The item's
own `publishedAt` is the arXiv date again, shifted to US Eastern midnight (`2026-05-29T20:00Z` for
an arXiv day of 2026-05-30), so it is only a fallback for the featured day when the paper lacks
`submittedOnDailyAt`, as older replies may.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Iterator

from papersift.errors import BadInput, SourceError
from papersift.ids import parse_arxiv_id
from papersift.ingest.base import Record, SourceSpec
from papersift.ingest.http import PoliteClient
from papersift.ingest.text import clean_text, parse_date
from papersift.models import Paper, Problem

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _load_array(data: bytes | str, source: str) -> list | Problem:
    """The reply's JSON array, or one Problem saying why the whole reply is unusable."""
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        reason = f"{e.msg} (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else str(e)
        return Problem(source, "reply", f"not JSON (truncated?): {reason}")
    if not isinstance(value, list):
        detail = ""
        if isinstance(value, dict) and value.get("error"):
            detail = f": {str(value['error'])[:200]}"
        return Problem(source, "reply", f"expected a JSON array of papers, got {type(value).__name__}{detail}")
    return value


def _day(value) -> dt.date | None:
    """The date part of an ISO timestamp; None when absent or unreadable (a signal is not worth a Problem)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_date(value)
    except ValueError:
        return None


def _username(who) -> str | None:
    # paper.submittedOnDailyBy has both `user` and `name`; the item's submittedBy only `name`
    if not isinstance(who, dict):
        return None
    name = who.get("user") or who.get("name")
    return name if isinstance(name, str) and name else None


def _name_of(org) -> str | None:
    return (org.get("name") or None) if isinstance(org, dict) else None


def parse_hf_daily_item(item, source: str = "hf-daily", position: str = "") -> Paper | Problem:
    """One daily-papers item → a Paper, or a Problem saying why it cannot be used."""
    if not isinstance(item, dict):
        return Problem(source, position, f"expected a JSON object, got {type(item).__name__}")
    paper = item.get("paper")
    if not isinstance(paper, dict):
        return Problem(source, position, "no `paper` object")
    raw_id = paper.get("id")
    parsed = parse_arxiv_id(raw_id) if isinstance(raw_id, str) else None
    if not parsed:
        return Problem(source, position, f"missing or malformed arXiv id {raw_id!r}")
    arxiv_id = parsed[0]
    title = clean_text(item.get("title") if isinstance(item.get("title"), str) else None) \
        or clean_text(paper.get("title") if isinstance(paper.get("title"), str) else None)
    if not title:
        return Problem(source, position, f"{arxiv_id}: missing title")
    summary = item.get("summary") if isinstance(item.get("summary"), str) else paper.get("summary")
    authors = paper.get("authors") if isinstance(paper.get("authors"), list) else []
    names = tuple(n for n in (clean_text(a.get("name")) for a in authors
                              if isinstance(a, dict) and isinstance(a.get("name"), str)) if n)

    featured = _day(paper.get("submittedOnDailyAt")) or _day(item.get("publishedAt"))
    signals: dict = {
        "hf_featured_on": featured.isoformat() if featured else None,
        "hf_submitted_by": _username(paper.get("submittedOnDailyBy")) or _username(item.get("submittedBy")),
        "hf_upvotes": paper.get("upvotes"),
        "github_repo": paper.get("githubRepo") or None,
        "github_stars": paper.get("githubStars"),
        "ai_keywords": paper.get("ai_keywords") or None,
        "ai_summary": paper.get("ai_summary") or None,
        "project_page": paper.get("projectPage") or None,
        "num_comments": item.get("numComments"),
        "organization": _name_of(item.get("organization")) or _name_of(paper.get("organization")),
    }
    links = {
        "abs": f"https://arxiv.org/abs/{arxiv_id}",
        "pdf": f"https://arxiv.org/pdf/{arxiv_id}",
        "hf": f"https://huggingface.co/papers/{arxiv_id}",
    }
    if isinstance(signals["github_repo"], str):
        links["code"] = signals["github_repo"]
    return Paper(
        title=title, arxiv_id=arxiv_id, version=parsed[1], abstract=clean_text(summary if isinstance(summary, str) else None),
        authors=names, submitted=_day(paper.get("publishedAt")), source=source, links=links,
        withdrawn=bool(paper.get("withdrawnAt") or item.get("withdrawnAt")),
        signals={k: v for k, v in signals.items() if v is not None},
        raw=json.dumps(item, ensure_ascii=False, separators=(",", ":")),
    )


def parse_hf_daily(data: bytes | str, source: str = "hf-daily") -> Iterator[Paper | Problem]:
    """Papers of one `/api/daily_papers` reply; a bad item is a Problem at `item N` (from 1), and a
    reply that is not a JSON array is one Problem."""
    items = _load_array(data, source)
    if isinstance(items, Problem):
        yield items
        return
    for n, item in enumerate(items, 1):
        yield parse_hf_daily_item(item, source, f"item {n}")


def fetch_hf_daily(client: PoliteClient, base_url: str, date: str | None = None,
                   source: str = "hf-daily") -> Iterator[Record]:
    """The papers featured on `date` (YYYY-MM-DD), or on the latest day when None. An empty array
    (weekends, holidays) yields nothing; a reply that is not a JSON array is a SourceError."""
    response = client.get(base_url, params={"date": date} if date else None)
    items = _load_array(response.content, source)
    if isinstance(items, Problem):
        raise SourceError(f"{base_url}: {items.reason}",
                          hint="Hugging Face may have changed its API or be failing; try again later")
    for n, item in enumerate(items, 1):
        yield parse_hf_daily_item(item, source, f"item {n}")


def open_hf_daily(target: str, settings, start: str | None, opts: dict) -> Iterator[Record]:
    """`YYYY-MM-DD` or `today` (or nothing) fetches from settings.hf_daily_url; anything else is a path
    to a saved reply."""
    target = (target or "").strip()
    if target in ("", "today") or _DATE.match(target):
        date = None
        if _DATE.match(target):
            try:
                dt.date.fromisoformat(target)
            except ValueError:
                raise BadInput(f"not a calendar date: {target}", hint="use YYYY-MM-DD, e.g. 2026-06-12") from None
            date = target
        with PoliteClient.from_settings(settings, delay=1.0) as client:
            yield from fetch_hf_daily(client, settings.hf_daily_url, date)
        return
    path = Path(target).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"no such file: {path}",
                          hint="pass a date (YYYY-MM-DD), `today`, or a saved /api/daily_papers reply") from None
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}") from None
    yield from parse_hf_daily(data)


SOURCES = [
    SourceSpec(
        name="hf-daily", help="Hugging Face daily papers (upvotes, GitHub repos, AI keywords) for a day",
        example="papersift ingest hf-daily 2026-06-12",
        target_help="a date YYYY-MM-DD, `today` (the default), or a saved /api/daily_papers JSON file",
        open=open_hf_daily, target_required=False,
    ),
]
