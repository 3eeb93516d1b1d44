"""Spelling correction for full-text queries on PostgreSQL: spelling.py's method (and its distance
functions and thresholds) on PostgreSQL's vocabulary. Where SQLite reads fts5vocab, this reads
papers_fts_vocab (Snowball stems with their paper counts, kept by sync_fulltext); where SQLite counts a
word's papers with MATCH, this counts with the papers_fts GIN index.
"""

from __future__ import annotations

import re
from collections import Counter

from papersift.store.spelling import (
    _WORD,
    KNOWN_RATIO,
    MAX_QUERY_WORDS,
    MAX_TYPED_DF,
    MIN_RATIO,
    edit_distance,
    max_edits,
    shortest_stem,
    stem_distance,
)


def _lexeme_query(term: str) -> str:
    """A tsquery literal matching exactly the stored lexeme `term` (no stemming again)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _doc_count(conn, word: str, cap: int) -> int:
    """Papers containing the word, counted up to `cap`: a common word stops at once."""
    return conn.execute("SELECT count(*) FROM (SELECT 1 FROM papers_fts WHERE doc @@ plainto_tsquery('papersift', %s) "
                        "LIMIT %s) x", (word, cap)).fetchone()[0]


def _candidates(conn, word: str) -> list[tuple[str, int]]:
    """Indexed terms that start with the word's first two letters (or with them swapped, or with the
    second and third swapped), of a plausible length."""
    shortest = shortest_stem(word)
    out: list[tuple[str, int]] = []
    for prefix in dict.fromkeys((word[:2], word[1] + word[0], word[0] + word[2])):
        out += conn.execute("SELECT term, doc FROM papers_fts_vocab WHERE term >= %s AND term < %s "
                            "AND length(term) BETWEEN %s AND %s",
                            (prefix, prefix + "\U0010ffff", shortest, len(word) + 2)).fetchall()
    return out


def surface_form(conn, term: str, typed: str) -> str:
    """The written form of a stem, among those in the papers that contain it, closest to what was typed."""
    stem = term[:-1] if term.endswith("i") else term  # the stemmer writes "immunotherapy" as "immunotherapi"
    pattern = re.compile(r"\b" + re.escape(stem) + r"\w*", re.IGNORECASE)
    counts: Counter[str] = Counter()
    for title, abstract in conn.execute(
            "SELECT p.title, p.abstract FROM papers_fts f JOIN papers p ON p.id = f.paper_id "
            "WHERE f.doc @@ %s::tsquery LIMIT 30", (_lexeme_query(term),)):
        counts.update(w.lower() for w in pattern.findall(f"{title} {abstract}"))
    if not counts:
        return term
    return min(counts, key=lambda w: (edit_distance(typed, w, len(w) + len(typed)), -counts[w], w))


def corrections(conn, query: str) -> dict[str, str]:
    """{typed word: corrected word} for the words of a typed query that look misspelt (spelling.corrections)."""
    if len(query.split()) > MAX_QUERY_WORDS:
        return {}
    out: dict[str, str] = {}
    for word in dict.fromkeys(w.lower() for w in _WORD.findall(query)):
        typed_df = _doc_count(conn, word, MAX_TYPED_DF + 1)
        if typed_df > MAX_TYPED_DF:
            continue
        limit = max_edits(word)
        best: tuple[float, int, str] | None = None
        for term, df in _candidates(conn, word):
            if df < (MIN_RATIO if typed_df == 0 else KNOWN_RATIO * typed_df):
                continue
            d = stem_distance(word, term, limit)
            if d <= limit + (0.5 if len(word) < 8 else 0) and (best is None or (d, -df, term) < best):
                best = (d, -df, term)
        if best is not None:
            out[word] = surface_form(conn, best[2], word)
    return out
