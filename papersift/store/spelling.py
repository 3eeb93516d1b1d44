"""Spelling correction for full-text queries, from the catalog's own vocabulary (SQLite FTS5).

A query word that (almost) no paper contains, `trasformer`, is matched against the indexed terms
(fts5vocab: porter stems with their document counts) that start with the same two letters and lie within
a small edit distance: one edit for words of 5–7 letters, two from 8 letters. Suffixes are allowed
to differ, since the vocabulary holds stems ("transform" for "transformers"). A candidate must be
far more common than the word itself, so a rare but real word (a gene name, an acronym) is kept.
The written word the correction would put in the query must itself lie within those edits of what
was typed (one edit for a word some papers use): a stem only finds candidates. Without that check,
"anthrax" became "anti", "insomnia" "into" and "drowning" "down" (a short stem plus "suffix" letters),
which cost SciFact claims 0.004 nDCG@10 and would puzzle any reader.

Real words are left alone: an English word (pyspellchecker's 160k-word dictionary) is never corrected,
however rare in the catalog ("random surfer" stayed "random suffer" before this rule, and a new paper,
"Power Walk: Revisiting the Random Surfer", was not found by its own title), and neither is a word
some papers use beside every other word of the query (a model's name in its own context).
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import json
import logging
import re
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from rapidfuzz.distance import OSA

from papersift.errors import MissingExtra
from papersift.store.fulltext import pasted

log = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W\d_]{5,}", re.UNICODE)
MIN_RATIO = 20  # a correction for a word no paper has must be in at least this many papers
KNOWN_RATIO = 50  # … and for a word some papers have, in this many times more
MAX_TYPED_DF = 10  # words in more papers than this are never corrected (typos recur in abstracts)
MAX_SUFFIX = 7  # letters porter may strip: "classification" → "classif"
SURFACE_TRIES = 3  # closest stems whose written forms are checked against the typed word


@functools.cache
def english_words() -> frozenset[str]:
    """The 160k words of pyspellchecker's English dictionary (MIT; read from its data file once: 0.2 s,
    +38 MB at its peak): a typed word found there is a real word, whatever the catalog holds."""
    try:
        path = importlib.resources.files("spellchecker") / "resources" / "en.json.gz"
    except ModuleNotFoundError:
        raise MissingExtra("pyspellchecker", "search") from None
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        return frozenset(json.load(f))


def max_edits(word: str) -> int:
    return 1 if len(word) < 8 else 2


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (a transposition counts as one edit), or limit + 1 as soon
    as it is known to exceed `limit` (rapidfuzz, in C: a pure-Python loop here took ~12 ms of a rare
    word's correction)."""
    return OSA.distance(a, b, score_cutoff=limit)


def stem_distance(word: str, term: str, limit: int) -> float:
    """Distance from the typed word to a vocabulary stem, letting the word carry up to MAX_SUFFIX
    extra letters of suffix at a cost of half an edit ("trasformers" → "transform": 1.5, not 3;
    porter cuts "classification" to "classif"). A stem under half the word's length ("pro" for
    "protien") is no candidate."""
    if len(term) < shortest_stem(word):
        return limit + 1
    best: float = limit + 1
    for cut in range(max(len(word) - MAX_SUFFIX, len(term) - limit, 1), min(len(word), len(term) + limit) + 1):
        best = min(best, edit_distance(word[:cut], term, limit) + (0.5 if cut < len(word) else 0))
    return best


def _doc_count(conn: sqlite3.Connection, words: str, cap: int) -> int:
    """Papers containing the word (or every one of several, space-separated letters-only words), counted
    up to `cap`: a common word stops at once."""
    match = " ".join(f'"{w}"' for w in words.split())
    row = conn.execute("SELECT count(*) FROM (SELECT 1 FROM papers_fts WHERE papers_fts MATCH ? LIMIT ?)",
                       (match, cap)).fetchone()
    return int(row[0])


def shortest_stem(word: str) -> int:
    return max(4, (len(word) + 1) // 2, len(word) - MAX_SUFFIX)


def prefixes(word: str) -> list[str]:
    """Where a misspelt word's right spelling may start: its first two letters, them swapped, or the
    first and third (the second and third swapped). Two letters keep a scan to a few hundred terms."""
    return list(dict.fromkeys((word[:2], word[1] + word[0], word[0] + word[2])))


class PrefixCache:
    """The vocabulary under each two-letter prefix, kept for TTL seconds. FTS5's vocabulary table
    counts documents by walking every posting of every term it returns: 6–8 ms a prefix at 75k papers
    (50 ms for "in", whose terms include "in" itself), three prefixes a rare word, which made the
    spelling check the slowest part of a typed query's p99 (30–50 ms). A served catalog sees the same
    prefixes again and again; a correction found up to TTL seconds late, or a document count that old,
    changes nothing a reader would notice. The store clears it when it syncs its own full-text index.

    A long-running server also asks for the whole vocabulary at once (keep_warm: 187k terms, ~1.3 s on
    a thread of its own, ~22 MB at 75k papers), read again in the background every TTL seconds, so no
    query pays for a cold prefix."""

    TTL = 600.0

    def __init__(self) -> None:
        self._terms: dict[str, tuple[float, list[tuple[str, int]]]] = {}
        self._whole: tuple[float, dict[str, list[tuple[str, int]]]] | None = None
        self._generation = 0  # bumped by clear(): a whole vocabulary read before it is not kept
        self._loader: Callable[[], None] | None = None
        self._loading = threading.Lock()
        self._thread: threading.Thread | None = None

    def clear(self) -> None:
        self._terms, self._whole = {}, None
        self._generation += 1
        self._refresh()

    def load_whole(self, conn: sqlite3.Connection) -> None:
        """Read every term with its document count, grouped by two-letter prefix."""
        generation, started = self._generation, time.monotonic()
        by_prefix: dict[str, list[tuple[str, int]]] = {}
        for term, doc in conn.execute("SELECT term, doc FROM papers_fts_vocab"):
            by_prefix.setdefault(term[:2], []).append((term, doc))
        if generation == self._generation:
            self._whole = (started, by_prefix)

    def keep_warm(self, loader: Callable[[], None]) -> threading.Thread | None:
        """Run `loader` (load_whole on a connection of its own) in the background now, and again
        whenever the whole vocabulary is older than TTL or has been cleared. Returns the thread reading
        it (one already under way, if so)."""
        self._loader = loader
        return self._refresh()

    def _refresh(self) -> threading.Thread | None:
        if self._loader is None:
            return None
        if not self._loading.acquire(blocking=False):
            return self._thread  # a read is under way
        loader = self._loader

        def run() -> None:
            try:
                loader()
            except Exception as e:  # noqa: BLE001 - prefixes are then read one by one, as without it
                log.warning("could not read the spelling vocabulary: %s", e)
            finally:
                self._loading.release()
        self._thread = threading.Thread(target=run, name="papersift-vocabulary", daemon=True)
        self._thread.start()
        return self._thread

    def _under(self, conn: sqlite3.Connection, prefix: str) -> list[tuple[str, int]]:
        now = time.monotonic()
        whole = self._whole
        if whole is not None:
            if now - whole[0] > self.TTL:
                self._refresh()  # answered from the old one until the new one is read
            return whole[1].get(prefix, [])
        self._refresh()  # kept warm but cleared (or not read yet): read it again, this query goes on
        cached = self._terms.get(prefix)
        if cached is None or now - cached[0] > self.TTL:
            rows = conn.execute("SELECT term, doc FROM papers_fts_vocab WHERE term >= ? AND term < ?",
                                (prefix, prefix + "\U0010ffff")).fetchall()
            self._terms[prefix] = cached = (now, rows)
        return cached[1]

    def candidates(self, conn: sqlite3.Connection, word: str) -> list[tuple[str, int]]:
        shortest, longest = shortest_stem(word), len(word) + 2
        return [(term, df) for prefix in prefixes(word) for term, df in self._under(conn, prefix)
                if shortest <= len(term) <= longest]


def _texts(conn: sqlite3.Connection, term: str) -> Iterable[tuple[str, str]]:
    """(title, abstract) of up to 30 papers whose index holds the stem `term`."""
    return conn.execute("SELECT title, abstract FROM papers_fts WHERE papers_fts MATCH ? LIMIT 30", (f'"{term}"',))


@dataclass(frozen=True)
class Vocabulary:
    """How a backend answers the three questions corrections() asks of its full-text index: how many
    papers hold a word, or all of several space-separated words (counting up to a cap), which indexed
    terms could be a misspelt word, and the texts of some papers holding a term. SQLite's (this module)
    reads FTS5; PostgreSQL's is in postgres_spelling.py."""

    doc_count: Callable[[Any, str, int], int]
    candidates: Callable[[Any, str], list[tuple[str, int]]]
    texts: Callable[[Any, str], Iterable[tuple[str, str]]]


def sqlite_vocabulary(cache: PrefixCache) -> Vocabulary:
    """SQLite's vocabulary: FTS5 counts and texts, candidate terms through the store's PrefixCache."""
    return Vocabulary(_doc_count, cache.candidates, _texts)


def surface_form(conn, term: str, typed: str, vocab: Vocabulary) -> str:
    """The written form of a stem, among those in the papers that contain it, closest to what was typed
    ("trasformer": "transform" → "transformer", not "transformation"), so a correction reads as a word
    and embeds as one."""
    stem = term[:-1] if term.endswith("i") else term  # porter writes "immunotherapy" as "immunotherapi"
    pattern = re.compile(r"\b" + re.escape(stem) + r"\w*", re.IGNORECASE)
    counts: Counter[str] = Counter()
    for title, abstract in vocab.texts(conn, term):
        counts.update(w.lower() for w in pattern.findall(f"{title} {abstract}"))
    if not counts:
        return term
    return min(counts, key=lambda w: (edit_distance(typed, w, len(w) + len(typed)), -counts[w], w))


def corrections(conn, query: str, vocab: Vocabulary) -> dict[str, str]:
    """{typed word: corrected word} for the words of a typed query that look misspelt; {} for a pasted
    text (fulltext.pasted), whose typos don't matter among so many words."""
    if pasted(query):
        return {}
    out: dict[str, str] = {}
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))
    in_context: bool | None = None  # does one paper hold every word of the query as typed?
    for word in words:
        if word in english_words():
            continue  # "surfer" is no typo of "suffer", however rare it is in the catalog
        typed_df = vocab.doc_count(conn, word, MAX_TYPED_DF + 1)
        if typed_df > MAX_TYPED_DF:
            continue
        limit = max_edits(word)
        close: list[tuple[float, int, str]] = []  # (distance, -doc count, term)
        for term, df in vocab.candidates(conn, word):
            if df < (MIN_RATIO if typed_df == 0 else KNOWN_RATIO * typed_df):
                continue
            d = stem_distance(word, term, limit)
            if d <= limit + (0.5 if len(word) < 8 else 0):
                close.append((d, -df, term))
        for _, _, term in sorted(close)[:SURFACE_TRIES]:
            written = surface_form(conn, term, word, vocab)
            # a word some papers use is a real word more often than a recurring typo: one edit at most
            if edit_distance(word, written, limit) <= (limit if typed_df == 0 else 1):
                # ...and is left alone where a paper uses it beside the query's other words (in a
                # "resnet backbone", "resnet" is no typo of "reset")
                if typed_df and len(words) > 1:
                    if in_context is None:
                        in_context = vocab.doc_count(conn, " ".join(words), 1) > 0
                    if in_context:
                        break
                out[word] = written
                break
    return out


def corrected(query: str, fixes: dict[str, str]) -> str:
    """The query with each misspelt word replaced by its correction."""
    if not fixes:
        return query
    return _WORD.sub(lambda m: fixes.get(m.group(0).lower(), m.group(0)), query)
