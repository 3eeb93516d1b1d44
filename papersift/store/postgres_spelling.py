"""Spelling correction for full-text queries on PostgreSQL: spelling.corrections with this Vocabulary.
Where SQLite reads fts5vocab, this reads papers_fts_vocab (Snowball stems with their paper counts, kept
by sync_fulltext); where SQLite counts a word's papers with MATCH, this counts with the papers_fts GIN
index.
"""

from __future__ import annotations

from papersift.store.spelling import Vocabulary, prefixes, shortest_stem


def _lexeme_query(term: str) -> str:
    """A tsquery literal matching exactly the stored lexeme `term` (no stemming again)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _doc_count(conn, word: str, cap: int) -> int:
    """Papers containing the word (or all of several), counted up to `cap`: a common word stops at once."""
    return conn.execute("SELECT count(*) FROM (SELECT 1 FROM papers_fts WHERE doc @@ plainto_tsquery('papersift', %s) "
                        "LIMIT %s) x", (word, cap)).fetchone()[0]


def _candidates(conn, word: str) -> list[tuple[str, int]]:
    """Indexed terms that start with the word's first two letters (or with them swapped, or with the
    second and third swapped), of a plausible length."""
    shortest = shortest_stem(word)
    out: list[tuple[str, int]] = []
    for prefix in prefixes(word):
        out += conn.execute("SELECT term, doc FROM papers_fts_vocab WHERE term >= %s AND term < %s "
                            "AND length(term) BETWEEN %s AND %s",
                            (prefix, prefix + "\U0010ffff", shortest, len(word) + 2)).fetchall()
    return out


def _texts(conn, term: str):
    """(title, abstract) of up to 30 papers whose index holds the lexeme `term`."""
    return conn.execute("SELECT p.title, p.abstract FROM papers_fts f JOIN papers p ON p.id = f.paper_id "
                        "WHERE f.doc @@ %s::tsquery LIMIT 30", (_lexeme_query(term),))


POSTGRES = Vocabulary(_doc_count, _candidates, _texts)
