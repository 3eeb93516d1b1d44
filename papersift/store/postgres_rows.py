"""Rows of the PostgreSQL catalog: the papers column list, conversions both ways, timestamps.

PostgreSQL keeps typed values (date, timestamptz, text[], jsonb) where SQLite keeps text; the Store
protocol's answers are the same for both: timestamps come back as ISO UTC text (`2026-01-01T12:00:00+00:00`)
wherever SQLite hands out its stored text.
"""

from __future__ import annotations

import datetime as dt

from psycopg.types.json import Jsonb

from papersift.models import Paper

PAPER_COLUMNS = (
    "id, arxiv_id, version, doi, title, abstract, authors, categories, submitted, updated, listed, "
    "source, links, comment, journal_ref, withdrawn, signals, raw"
)
# the same columns qualified with the papers table's alias, for joins
P_COLUMNS = ", ".join("p." + c.strip() for c in PAPER_COLUMNS.split(","))

# the columns written by an insert or update, in paper_values' order
WRITE_COLUMNS = ("arxiv_id", "version", "doi", "title_key", "title", "abstract", "authors", "categories",
                 "primary_category", "submitted", "updated", "listed", "source", "links", "comment", "journal_ref",
                 "withdrawn", "signals", "raw")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def utc(at: dt.datetime) -> dt.datetime:
    """An aware UTC datetime, to the second (a naive one is taken as UTC), as SQLite's _ts stores it."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return at.astimezone(dt.timezone.utc).replace(microsecond=0)


def iso(value: dt.datetime | None) -> str | None:
    """A stored timestamp as the text SQLite would have kept."""
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def paper_values(p: Paper, tkey: str) -> tuple:
    return (
        p.arxiv_id, p.version, p.doi, tkey, p.title, p.abstract, list(p.authors), list(p.categories),
        p.categories[0] if p.categories else None, p.submitted, p.updated, p.listed, p.source,
        Jsonb(dict(p.links or {})), p.comment, p.journal_ref, bool(p.withdrawn), Jsonb(dict(p.signals or {})), p.raw,
    )


def row_to_paper(row: tuple) -> Paper:
    (pid, arxiv_id, version, doi, title, abstract, authors, categories, submitted, updated, listed,
     source, links, comment, journal_ref, withdrawn, signals, raw) = row
    return Paper(
        id=pid, arxiv_id=arxiv_id, version=version, doi=doi, title=title, abstract=abstract,
        authors=tuple(authors), categories=tuple(categories), submitted=submitted, updated=updated, listed=listed,
        source=source, links=links or {}, comment=comment, journal_ref=journal_ref, withdrawn=bool(withdrawn),
        signals=signals or {}, raw=raw,
    )
