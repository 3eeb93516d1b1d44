"""Rows of the SQLite catalog's papers table: the column list and the conversions both ways."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

from papersift.models import Paper

_PAPER_COLUMNS = (
    "id, arxiv_id, version, doi, title, abstract, authors, categories, submitted, updated, listed, "
    "source, links, comment, journal_ref, withdrawn, signals, raw"
)


# the same columns qualified with the papers table's alias, for joins
_P_COLUMNS = ", ".join("p." + c.strip() for c in _PAPER_COLUMNS.split(","))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def _row_to_paper(row: sqlite3.Row | tuple) -> Paper:
    (pid, arxiv_id, version, doi, title, abstract, authors, categories, submitted, updated, listed,
     source, links, comment, journal_ref, withdrawn, signals, raw) = row
    links = json.loads(links) if links != "{}" else {}
    signals = json.loads(signals) if signals != "{}" else {}
    return Paper(
        id=pid, arxiv_id=arxiv_id, version=version, doi=doi, title=title, abstract=abstract,
        authors=tuple(json.loads(authors)), categories=tuple(categories.split()) if categories else (),
        submitted=_date(submitted), updated=_date(updated), listed=_date(listed), source=source,
        links=links, comment=comment, journal_ref=journal_ref, withdrawn=bool(withdrawn),
        signals=signals, raw=raw,
    )
