"""Full-text search on SQLite FTS5: query sanitizing, BM25 with field weights, filters, sync.

A user's query never reaches FTS5 syntax raw: it is split into words, phrases ("…") and prefixes
(word*), each quoted, so `"`, `NEAR(`, `*` or a lone `AND` are searched for, not parsed. Words are
OR-ed: BM25 ranks papers matching more (and rarer) words first, which suits long natural-language
queries; phrases must match as phrases.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from dataclasses import dataclass

# title counts most, then authors, then the abstract
FIELD_WEIGHTS = (5.0, 1.0, 2.0)  # title, abstract, authors (FTS5 column order)

_TOKEN = re.compile(r'"([^"]*)"|(\w[\w\-\.\']*\*?)', re.UNICODE)
_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were will with"
    " we our not no can which their these those than then there into via using use used based".split()
)


# A query over TYPED_MAX_WORDS words was pasted (an abstract, a paragraph of a draft), not typed: it
# gets no spelling check, and search treats it as prose (rank/search.py says how).
TYPED_MAX_WORDS = 12


def pasted(query: str) -> bool:
    """A query too long to have been typed: a pasted abstract or paragraph."""
    return len(query.split()) > TYPED_MAX_WORDS


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    author: str | None = None


def build_match(query: str, max_terms: int = 64) -> str | None:
    """The FTS5 MATCH expression for a user query, or None when nothing searchable is left."""
    parts: list[str] = []
    seen: set[str] = set()
    for m in _TOKEN.finditer(query):
        phrase, word = m.group(1), m.group(2)
        if phrase is not None:
            words = _WORD.findall(phrase)
            if words:
                parts.append('"' + " ".join(words) + '"')
            continue
        prefix = word.endswith("*")
        for w in _WORD.findall(word.rstrip("*")):
            lw = w.lower()
            if (lw in STOPWORDS and not prefix) or lw in seen:
                continue
            seen.add(lw)
            parts.append(f'"{w}"' + ("*" if prefix and len(w) >= 2 else ""))
        if len(parts) >= max_terms:
            break
    if not parts:
        # a query of stopwords only ("the", "AND") is still a search: for those words themselves
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:max_terms]
        parts = [f'"{w}"' for w in words]
    return " OR ".join(parts[:max_terms]) if parts else None


def _filter_sql(filters: Filters | None) -> tuple[str, list]:
    if filters is None:
        return "", []
    where, args = [], []
    if filters.category:
        where.append("p.id IN (SELECT paper_id FROM paper_categories WHERE category = ?)")
        args.append(filters.category)
    if filters.since:
        where.append("coalesce(p.listed, p.submitted) >= ?")
        args.append(filters.since.isoformat())
    if filters.until:
        where.append("coalesce(p.listed, p.submitted) <= ?")
        args.append(filters.until.isoformat())
    if filters.author:
        where.append("p.id IN (SELECT pa.paper_id FROM authors a JOIN paper_authors pa ON pa.author_id = a.id "
                     "WHERE a.name = ? COLLATE NOCASE)")
        args.append(filters.author)
    return ("AND " + " AND ".join(where)) if where else "", args


def search(conn: sqlite3.Connection, query: str, limit: int = 100, filters: Filters | None = None,
           weights: tuple[float, float, float] = FIELD_WEIGHTS) -> list[tuple[int, float]]:
    """(paper id, BM25 score) best first; higher is better (FTS5's bm25() is negated)."""
    match = build_match(query)
    if match is None:
        return []
    where, args = _filter_sql(filters)
    sql = (f"SELECT f.rowid, -bm25(papers_fts, ?, ?, ?) AS score FROM papers_fts f "
           f"JOIN papers p ON p.id = f.rowid WHERE papers_fts MATCH ? {where} ORDER BY score DESC LIMIT ?")
    return [(r[0], r[1]) for r in conn.execute(sql, (*weights, match, *args, limit))]


def allowed_ids(conn: sqlite3.Connection, filters: Filters) -> list[int]:
    """Every paper id passing the filters (for filtering vector search)."""
    where, args = _filter_sql(filters)
    return [r[0] for r in conn.execute(f"SELECT p.id FROM papers p WHERE 1 {where}", args)]


def _write(conn: sqlite3.Connection, rows) -> None:
    ids = [r[0] for r in rows]
    for i in range(0, len(ids), 900):
        chunk = ids[i:i + 900]
        conn.execute(f"DELETE FROM papers_fts WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)
    conn.executemany("INSERT INTO papers_fts (rowid, title, abstract, authors) VALUES (?, ?, ?, ?)",
                     [(r[0], r[1], r[2], " ".join(json.loads(r[3]))) for r in rows])


def sync(conn: sqlite3.Connection) -> int:
    """Bring papers_fts in step with papers: every paper whose change_seq is above the last synced one.
    One transaction per write batch of the catalog, watermark included, so a crash resumes cleanly."""
    row = conn.execute("SELECT value FROM index_state WHERE key = 'fts_seq'").fetchone()
    mark = int(row[0]) if row else 0
    written = 0
    seqs = [r[0] for r in conn.execute(
        "SELECT DISTINCT change_seq FROM papers WHERE change_seq > ? ORDER BY change_seq", (mark,))]
    for seq in seqs:
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute("SELECT id, title, abstract, authors FROM papers WHERE change_seq = ?",
                                (seq,)).fetchall()
            _write(conn, rows)
            conn.execute("INSERT INTO index_state VALUES ('fts_seq', ?) ON CONFLICT (key) "
                         "DO UPDATE SET value = excluded.value", (str(seq),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        written += len(rows)
    return written
