"""In-memory BM25: the lexical half of search, fast enough for a search box at 100k+ papers.

SQLite FTS5 scores every paper that matches any query word; with OR-ed words at 75k papers that is
100–1000 ms a query. Here a query adds up precomputed per-posting weights of its terms into one
float32 array per catalog row: ~0.1–0.5 ms for a typed query, a few ms for a pasted abstract
(bench/lexical_speed.py).

  * Text: lowercase unicode words (letters and digits), FTS5's stopwords plus more English function
    words, words of 40+ characters dropped, Snowball English stems (PyStemmer, C; cached per word).
    Authors are their own field. A paper's term frequency is BM25F-style weighted over its fields,
    Σ FIELD_WEIGHTS[f] · tf(f), and its length is weighted the same way (one length normalisation).
  * BM25 as in Lucene / bm25s: idf = ln(1 + (N − df + 0.5) / (df + 0.5)), tf part
    tf·(k1 + 1) / (tf + k1·(1 − b + b·len/avglen)), and a query term used qtf times counts
    (k3 + 1)·qtf / (k3 + qtf) times (Robertson's k3): a word a pasted paragraph keeps coming back to is
    its topic. Typed queries rarely repeat a word, so for them nothing changes; on ACM-CR's citation
    paragraphs BM25 Recall@10 went 0.350 → 0.381 (k3 chosen on the tuning split). Files hold weighted
    term frequencies, not scores: opening an index computes every posting's weight (idf included) from
    N, df and avglen of the whole index, main and delta together, so the statistics are always exact
    and k1, b are run-time choices.
  * Two segments: `main` and a small `delta` of the papers added or changed since main was built.
    A changed paper's old row in main is dead: it scores nothing and is left out of N, df and avglen,
    so an incremental sync ranks exactly as a rebuild. `sync_lexical_index` rebuilds the delta on every
    index step (new papers are searchable at once) and merges all into a new main when the delta
    passes MERGE_SHARE of main.
  * Terms are looked up by a 64-bit hash (blake2b) in a sorted uint64 array: 8 bytes a term and no
    Python dict to build at load; each segment also keeps its terms as text (terms.txt) to inspect.
  * Files: each segment is a folder of .npy files (no pickles) written under a temporary name, fsynced
    and renamed; the JSON `CURRENT` (the manifest: segments, their sizes and sha256, the catalog it was
    built from (Store.catalog_id) and its change_seq covered, the text analysis used) is replaced last,
    so a crash mid-write leaves the previous index whole. `open_lexical_index` checks every file against
    it; the catalog is the source of truth, and a missing, altered, differently analysed or another
    catalog's index is rebuilt from it.
  * Phrases ("…") and prefixes (word*) are left to FTS5: see `handles`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from array import array
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from papersift.errors import MissingExtra
from papersift.store.base import Store
from papersift.store.fulltext import STOPWORDS as FTS_STOPWORDS

try:
    import fcntl
except ImportError:  # not POSIX: syncs are not serialised; run one `papersift index` at a time
    fcntl = None

log = logging.getLogger(__name__)

TITLE_WEIGHT = 2.0
ABSTRACT_WEIGHT = 1.0
AUTHOR_WEIGHT = 1.0
FIELD_WEIGHTS = (TITLE_WEIGHT, ABSTRACT_WEIGHT, AUTHOR_WEIGHT)  # title, abstract, authors
K1 = 1.2
B = 0.75
K3 = 1.5  # query term frequency saturation: a word used twice counts 1.43×, three times 1.67×
MERGE_SHARE = 0.1  # a delta above this share of main is merged into a new main
MAX_QUERY_TERMS = 256
MAX_WORD = 40  # longer "words" are markup, sequences or hashes, not search terms
CHUNK = 4096  # papers tokenised per numpy counting step while building
FORMAT = 2

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# FTS5's list plus more English function words: BM25 gives them little weight, but in a pasted
# paragraph they are most of the postings to add up.
STOPWORDS = FTS_STOPWORDS | frozenset(
    "about above after again against all also am any because been before being below between both but "
    "could did do does doing down during each few further had having he her here hers him his how i if "
    "me more most my nor off once only other ought ours out over own same she should so some such them "
    "themselves they through too under until up very what when where who whom why would you your "
    "may might must shall however thus while within without"
    .split())


def _stemmer():
    try:
        import Stemmer
    except ImportError:
        raise MissingExtra("PyStemmer", "search") from None
    return Stemmer.Stemmer("english"), f"snowball-english/PyStemmer-{getattr(Stemmer, '__version__', '?')}"


def term_hash(term: str) -> int:
    """A term's 64-bit key: a collision among a million terms has odds of ~1 in 10^7."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest(), "little")


def analysis_params(weights: tuple[float, float, float] | None = None) -> dict:
    """What the saved term frequencies depend on: an index built with other values is rebuilt."""
    weights = FIELD_WEIGHTS if weights is None else weights
    stop = hashlib.sha256(" ".join(sorted(STOPWORDS)).encode()).hexdigest()[:16]
    return {"words": _WORD.pattern, "max_word": MAX_WORD, "stopwords_sha256": stop, "stemmer": _stemmer()[1],
            "term_hash": "blake2b-64-le", "field_weights": [float(w) for w in weights]}


class Analyzer:
    """Text → stems. Stems are cached per word: a catalog has far fewer distinct words than words."""

    MAX_CACHE = 1 << 20  # a server sees endless new query words: bound the cache

    def __init__(self) -> None:
        self.stemmer = _stemmer()[0]
        self._cache: dict[str, str | None] = {}

    @staticmethod
    def words(text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def stems(self, words: Iterable[str]) -> list[str | None]:
        """The stem of each word, None for a stopword or an over-long word."""
        words = list(words)
        cache = self._cache  # a local reference: another thread may swap in a fresh cache meanwhile
        missing = [w for w in set(words) if w not in cache]
        if missing:
            if len(cache) + len(missing) > self.MAX_CACHE:
                cache = self._cache = {}
                missing = list(set(words))
            indexed = [w for w in missing if w not in STOPWORDS and len(w) < MAX_WORD]
            cache.update(dict.fromkeys(missing))
            cache.update(zip(indexed, self.stemmer.stemWords(indexed)))
        return [cache[w] for w in words]

    def terms(self, text: str) -> list[str]:
        return [s for s in self.stems(self.words(text)) if s is not None]


def handles(query: str) -> bool:
    """True when the in-memory index can answer the query; phrases and prefixes go to FTS5."""
    return '"' not in query and not re.search(r"\w\*", query)


# -- segments ------------------------------------------------------------------------------------

@dataclass
class Segment:
    """Postings of one set of papers: term `hashes[t]` (sorted) is in rows[indptr[t]:indptr[t+1]]
    with weighted term frequencies tfs[…]; rows index `ids` and `lengths`; `stems[t]` is its text."""

    ids: np.ndarray  # int64 paper id per row
    lengths: np.ndarray  # float32 weighted length per row
    hashes: np.ndarray  # uint64 term hashes, sorted
    indptr: np.ndarray  # int64 [terms + 1]
    rows: np.ndarray  # int32 posting rows, ascending within a term
    tfs: np.ndarray  # float32 weighted term frequencies
    stems: list[str] = field(default_factory=list)  # the terms as text, same order (empty when not loaded)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> Segment:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.uint64),
                   np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))


MAPPED = ("rows", "tfs")
ARRAYS = {"ids": np.int64, "lengths": np.float32, "hashes": np.uint64, "indptr": np.int64,
          "rows": np.int32, "tfs": np.float32}


class SegmentBuilder:
    """Papers in, a Segment out. Tokens are counted CHUNK papers at a time in numpy, so memory stays
    near that of the finished postings (~12 bytes each), not that of Python lists (~80 bytes each)."""

    def __init__(self, analyzer: Analyzer | None = None, weights: tuple[float, float, float] | None = None):
        self.analyzer = analyzer or Analyzer()
        self.weights = np.asarray(FIELD_WEIGHTS if weights is None else weights, np.float32)
        self._term_of_word: dict[str, int] = {}  # -1: not indexed
        self._term_of_stem: dict[str, int] = {}
        self._term_of_hash: dict[int, int] = {}
        self._hashes: list[int] = []
        self._stems: list[str] = []
        self._ids: list[int] = []
        self._row_of: dict[int, int] = {}
        self._superseded: list[int] = []
        self._tokens = array("i")  # term ids of the chunk's words, paper by paper, field by field
        self._counts = array("i")  # words per (paper, field) in the chunk
        self._chunk_start = 0
        self._postings: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (terms, rows, tfs) per chunk
        self._lengths: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._row_of)

    def add(self, pid: int, title: str, abstract: str, authors: str) -> None:
        """A paper seen twice (a catalog paging forward while a paper changes) keeps its last text."""
        row = len(self._ids)
        if pid in self._row_of:
            self._superseded.append(self._row_of[pid])
        self._row_of[pid] = row
        self._ids.append(pid)
        for text in (title, abstract, authors):
            words = self.analyzer.words(text)
            try:
                terms = list(map(self._term_of_word.__getitem__, words))
            except KeyError:
                self._learn(words)
                terms = list(map(self._term_of_word.__getitem__, words))
            self._tokens.extend(terms)
            self._counts.append(len(terms))
        if len(self._ids) - self._chunk_start >= CHUNK:
            self._flush()

    def _learn(self, words: list[str]) -> None:
        """Term ids for the words not seen before: stemmed in one batch, each new stem hashed once."""
        new = set(words).difference(self._term_of_word)
        indexed = [w for w in new if w not in STOPWORDS and len(w) < MAX_WORD]
        self._term_of_word.update(dict.fromkeys(new, -1))
        for word, stem in zip(indexed, self.analyzer.stemmer.stemWords(indexed)):
            term = self._term_of_stem.get(stem)
            if term is None:
                h = term_hash(stem)
                term = self._term_of_hash.get(h)  # a different stem with the same hash: merged with it
                if term is None:
                    term = self._term_of_hash[h] = len(self._hashes)
                    self._hashes.append(h)
                    self._stems.append(stem)
                self._term_of_stem[stem] = term
            self._term_of_word[word] = term

    def _flush(self) -> None:
        """Count the chunk's (row, term) pairs: one sort instead of a dict update per word."""
        counts = np.array(self._counts, np.int64).reshape(-1, 3)
        if not len(counts):
            return
        n, base = len(counts), self._chunk_start
        tokens = np.array(self._tokens, np.int32)
        rows = np.repeat(np.arange(n, dtype=np.int64), counts.sum(axis=1))
        weights = np.repeat(np.tile(self.weights, n), counts.ravel())
        keep = (tokens >= 0) & (weights > 0)
        tokens, rows, weights = tokens[keep], rows[keep], weights[keep]
        self._lengths.append(np.bincount(rows, weights, minlength=n).astype(np.float32))
        keys = (rows << 32) | tokens.astype(np.int64)
        order = np.argsort(keys, kind="stable")
        keys, weights = keys[order], weights[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])) if len(keys) else np.zeros(0, np.int64)
        tfs = np.add.reduceat(weights, starts) if len(keys) else np.zeros(0, np.float32)
        keys = keys[starts]
        self._postings.append(((keys & 0xFFFFFFFF).astype(np.int32), (keys >> 32).astype(np.int32) + base,
                               tfs.astype(np.float32)))
        self._tokens, self._counts, self._chunk_start = array("i"), array("i"), len(self._ids)

    def finish(self) -> Segment:
        self._flush()
        ids = np.array(self._ids, np.int64)
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.float32)
        if self._postings:
            terms, rows, tfs = (np.concatenate(parts) for parts in zip(*self._postings))
            self._postings = []  # the chunks' copies: freed before the sort by term needs its own
        else:
            terms, rows, tfs = np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
        if self._superseded:
            ids, lengths, terms, rows, tfs = _drop_rows(np.array(self._superseded), ids, lengths, terms, rows, tfs)
        return _by_term(ids, lengths, np.array(self._hashes, np.uint64), self._stems, terms, rows, tfs)


def _drop_rows(drop: np.ndarray, ids, lengths, terms, rows, tfs):
    keep_row = np.ones(len(ids), bool)
    keep_row[drop] = False
    new_row = (np.cumsum(keep_row) - 1).astype(np.int32)
    keep = keep_row[rows]
    return ids[keep_row], lengths[keep_row], terms[keep], new_row[rows[keep]], tfs[keep]


def _by_term(ids, lengths, hashes, stems, terms, rows, tfs) -> Segment:
    """Postings grouped by term, terms in hash order (what lookups search), unused terms dropped."""
    order = np.argsort(hashes, kind="stable")
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    terms = rank[terms]
    df = np.bincount(terms, minlength=len(order)) if len(order) else np.zeros(0, np.int64)
    used = df > 0
    term = (np.cumsum(used, dtype=np.int32) - 1)[terms]
    del terms
    by_term = np.argsort(term, kind="stable")  # rows stay ascending within each term
    indptr = np.zeros(int(used.sum()) + 1, np.int64)
    np.cumsum(df[used], out=indptr[1:])
    kept = order[used]  # original term ids, in hash order
    return Segment(ids, lengths, hashes[kept], indptr, rows[by_term], tfs[by_term], [stems[i] for i in kept.tolist()])


def build_segment(texts: Iterable[tuple[int, str, str, str]], analyzer: Analyzer | None = None,
                  weights: tuple[float, float, float] | None = None) -> Segment:
    """A segment from (paper id, title, abstract, authors) tuples; a later tuple for the same id wins."""
    builder = SegmentBuilder(analyzer, weights)
    for pid, title, abstract, authors in texts:
        builder.add(pid, title, abstract, authors)
    return builder.finish()


# -- the index -----------------------------------------------------------------------------------

class LexicalIndex:
    """BM25 over a main and a delta segment. Opening computes each posting's final weight (idf and
    length normalisation of the whole index in; ~0.2 s at 75k papers, or on the first query when
    `lazy`), so a query only adds weights up: one np.add.at per query term into a float32 score per
    row, then a partial sort of the rows that scored."""

    def __init__(self, main: Segment, delta: Segment | None = None, seq: int = 0, k1: float = K1, b: float = B,
                 *, lazy: bool = False):
        delta = delta if delta is not None else Segment.empty()
        self.main, self.delta, self.seq, self.k1, self.b = main, delta, seq, k1, b
        self.analyzer = Analyzer()
        self._dead = np.isin(main.ids, delta.ids) if len(delta) else np.zeros(len(main), bool)
        self.ids = np.concatenate([main.ids, delta.ids])
        self.live = np.concatenate([~self._dead, np.ones(len(delta), bool)])
        self.n_live = int(self.live.sum())
        self._ready = threading.Lock()
        self._parts: list | None = None
        self._table = _row_table(main.ids, delta.ids, len(main))
        if not lazy:  # `lazy`: the weights wait for the first query (a sync that only saves: ~0.2 s at 75k)
            self._prepare()

    def _prepare(self) -> list:
        """Every posting's final weight, computed once."""
        if self._parts is not None:
            return self._parts
        with self._ready:
            if self._parts is None:
                main, delta, k1, dead = self.main, self.delta, self.k1, self._dead
                norm = _length_norms(np.concatenate([main.lengths, delta.lengths]), self.live, k1, self.b)
                df_main, df_delta = _live_df(main, dead), np.diff(delta.indptr)
                df_main_all = df_main + _df_of(main.hashes, delta.hashes, df_delta)
                df_delta_all = df_delta + _df_of(delta.hashes, main.hashes, df_main)
                self._parts = [  # np.asarray: a plain view of a memory map, cheaper to slice
                    (main.hashes, main.indptr, np.asarray(main.rows),
                     _weights(main, df_main_all, self.n_live, norm[:len(main)], k1)),
                    (delta.hashes, delta.indptr, (delta.rows + len(main)).astype(np.int32),
                     _weights(delta, df_delta_all, self.n_live, norm[len(main):], k1)),
                ]
        return self._parts

    def __len__(self) -> int:
        return self.n_live

    def search(self, query: str, k: int = 100, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(paper id, BM25 score) best first, ties by id; only papers holding a query term, and with
        `allowed`, only those paper ids. Stopword-only queries find nothing here."""
        hashes, counts = self.query_terms(query)
        if int(k) <= 0 or not len(hashes) or not self.n_live:
            return []
        saturated = ((K3 + 1) * counts / (K3 + counts)).astype(np.float32)
        scores = np.zeros(len(self.ids), np.float32)
        for seg_hashes, indptr, rows, weights in self._prepare():
            found, which = _lookup_each(seg_hashes, hashes)
            for t, qw in zip(found.tolist(), saturated[which].tolist()):
                lo, hi = indptr[t], indptr[t + 1]
                # np.add.at on float32: ~2.3 ns a posting, 2.6x faster than `scores[rows] += w`, 1.5x
                # than np.bincount of the concatenated postings (which also copies them)
                np.add.at(scores, rows[lo:hi], weights[lo:hi] if qw == 1.0 else qw * weights[lo:hi])
        if allowed is not None:
            scores[~self.allowed_rows(allowed)] = 0
        return self._top(scores, int(k))

    def document_frequency(self, stems: Iterable[str]) -> dict[str, int]:
        """How many papers hold each stem (main and delta together; a changed paper may count twice)."""
        stems = list(dict.fromkeys(stems))
        hashes = np.array([term_hash(t) for t in stems], np.uint64)
        out = dict.fromkeys(stems, 0)
        for seg_hashes, indptr, _, _ in self._prepare():
            if not len(seg_hashes) or not len(hashes):
                continue
            at = np.minimum(np.searchsorted(seg_hashes, hashes), len(seg_hashes) - 1)
            for stem, i, found in zip(stems, at.tolist(), (seg_hashes[at] == hashes).tolist()):
                if found:
                    out[stem] += int(indptr[i + 1] - indptr[i])
        return out

    def query_terms(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(hash of each distinct query term, how many times the query uses it), first use first."""
        counts = Counter(self.analyzer.terms(query))
        terms = list(counts)[:MAX_QUERY_TERMS]
        return (np.array([term_hash(t) for t in terms], np.uint64),
                np.array([counts[t] for t in terms], np.float32))

    def allowed_rows(self, allowed) -> np.ndarray:
        """Mask over rows: live rows whose paper id is in `allowed` (unknown ids are ignored)."""
        allowed = np.asarray(allowed).reshape(-1).astype(np.int64, copy=False)
        mask = np.zeros(len(self.ids), bool)
        if self._table is not None:
            rows = self._table[allowed[(allowed >= 0) & (allowed < len(self._table))]]
            mask[rows[rows >= 0]] = True
        else:
            mask = np.isin(self.ids, allowed) & self.live
        return mask

    def _top(self, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:  # keep every row tied with the k-th score, so ties are cut by id below
            s = scores[hits]
            hits = hits[s >= -np.partition(-s, k - 1)[k - 1]]
        hits = hits[np.lexsort((self.ids[hits], -scores[hits]))][:k]
        return list(zip(self.ids[hits].tolist(), scores[hits].astype(np.float64).tolist()))


def _length_norms(lengths: np.ndarray, live: np.ndarray, k1: float, b: float) -> np.ndarray:
    """k1·(1 − b + b·len/avglen) per row, avglen over live rows; ∞ for a dead row, so its weights are 0."""
    lengths = lengths.astype(np.float64)
    avg = float(lengths[live].mean()) if live.any() else 1.0
    norm = k1 * (1 - b + b * lengths / max(avg, 1e-9))
    norm[~live] = np.inf
    return norm


def _lookup_each(hashes: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices in a segment's sorted `hashes`, indices in `query`) of the query hashes it holds."""
    if not len(hashes) or not len(query):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    at = np.minimum(np.searchsorted(hashes, query), len(hashes) - 1)
    held = np.flatnonzero(hashes[at] == query)
    return at[held], held


def _df_of(hashes: np.ndarray, other: np.ndarray, other_df: np.ndarray) -> np.ndarray:
    """Document frequency in another segment of each of this segment's terms (0 where it has none)."""
    out = np.zeros(len(hashes), np.int64)
    if len(hashes) and len(other):
        at = np.minimum(np.searchsorted(other, hashes), len(other) - 1)
        found = other[at] == hashes
        out[found] = other_df[at[found]]
    return out


def _live_df(seg: Segment, dead: np.ndarray) -> np.ndarray:
    """Per term, how many live rows hold it: a changed paper's old row must not count twice."""
    df = np.diff(seg.indptr)
    if not dead.any() or not len(seg.rows):
        return df
    dead_per_term = np.add.reduceat(dead[seg.rows].astype(np.int64), seg.indptr[:-1])
    return df - dead_per_term


def _weights(seg: Segment, df: np.ndarray, n: int, norm: np.ndarray, k1: float,
             block: int = 1 << 20) -> np.ndarray:
    """Every posting's BM25 weight, idf · tf·(k1+1)/(tf + norm[row]), a block of terms at a time so
    that the float64 temporaries stay small at any catalog size."""
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    out = np.empty(len(seg.rows), np.float32)
    t0 = 0
    while t0 < len(df):
        t1 = max(t0 + 1, int(np.searchsorted(seg.indptr, seg.indptr[t0] + block, side="right")) - 1)
        t1 = min(t1, len(df))
        lo, hi = seg.indptr[t0], seg.indptr[t1]
        tf = seg.tfs[lo:hi].astype(np.float64)
        term_idf = np.repeat(idf[t0:t1], np.diff(seg.indptr[t0:t1 + 1]))
        out[lo:hi] = term_idf * tf * (k1 + 1) / (tf + norm[seg.rows[lo:hi]])
        t0 = t1
    return out


def _row_table(main_ids: np.ndarray, delta_ids: np.ndarray, offset: int) -> np.ndarray | None:
    """paper id → live row (−1: none), for filters; None when ids are too sparse for a table."""
    n = len(main_ids) + len(delta_ids)
    top = int(max(main_ids.max(initial=-1), delta_ids.max(initial=-1)))
    if top < 0 or top >= 4 * n + (1 << 20):
        return None
    table = np.full(top + 1, -1, np.int32)
    table[main_ids] = np.arange(len(main_ids), dtype=np.int32)
    table[delta_ids] = np.arange(offset, offset + len(delta_ids), dtype=np.int32)  # a changed paper's live row
    return table


# -- files ---------------------------------------------------------------------------------------

class Unreadable(Exception):
    """A saved index that cannot be used; `open_lexical_index` logs it and returns None."""


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _save_segment(folder: Path, seg: Segment) -> dict:
    """Write a segment folder (temporary name, fsynced, renamed); returns its manifest entry."""
    name = f"seg-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp = folder / f".tmp-{name}"
    tmp.mkdir()
    try:
        for key in ARRAYS:
            with open(tmp / f"{key}.npy", "wb") as f:
                np.save(f, getattr(seg, key), allow_pickle=False)
        (tmp / "terms.txt").write_text("".join(s + "\n" for s in seg.stems), encoding="utf-8")
        files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())}
        for p in [*tmp.iterdir(), tmp]:
            _fsync(p)
        os.rename(tmp, folder / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"name": name, "papers": len(seg), "terms": len(seg.hashes), "postings": len(seg.rows), "files": files}


def _write_manifest(folder: Path, manifest: dict) -> None:
    """The commit point: CURRENT is replaced in one rename, after everything it names is on disk."""
    tmp = folder / f"CURRENT.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync(folder)
        os.replace(tmp, folder / "CURRENT")
        _fsync(folder)
    finally:
        tmp.unlink(missing_ok=True)


def read_manifest(folder: Path) -> dict | None:
    """The manifest in CURRENT, or None when there is none (Unreadable when it is not ours)."""
    try:
        text = (Path(folder) / "CURRENT").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(text)
    except ValueError as e:
        raise Unreadable(f"{folder}/CURRENT is not JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Unreadable(f"{folder}/CURRENT is not a format {FORMAT} lexical index manifest")
    return manifest


def _load_segment(folder: Path, entry: dict | None) -> Segment:
    if entry is None:
        return Segment.empty()
    name = str(entry.get("name", ""))
    if not name.startswith("seg-") or "/" in name:
        raise Unreadable(f"{folder}/CURRENT names {name!r}, which is not a segment")
    files = entry.get("files") or {}
    for fname in [*(f"{k}.npy" for k in ARRAYS), "terms.txt"]:
        path, want = folder / name / fname, files.get(fname) or {}
        if not path.is_file() or path.stat().st_size != want.get("bytes") or _sha256(path) != want.get("sha256"):
            raise Unreadable(f"{path} is missing, truncated or altered since it was saved")
    arrays = {}
    for key, dtype in ARRAYS.items():
        # postings are memory-mapped: read-only pages that every server process shares, and that
        # the page cache already holds after the checksums above
        mmap = "r" if key in MAPPED else None
        arrays[key] = np.load(folder / name / f"{key}.npy", mmap_mode=mmap, allow_pickle=False)
        if arrays[key].dtype != dtype or arrays[key].ndim != 1:
            raise Unreadable(f"{folder / name}/{key}.npy holds {arrays[key].dtype} {arrays[key].shape}")
    seg = Segment(**arrays)
    _check_shapes(seg, entry, folder / name)
    return seg


def _check_shapes(seg: Segment, entry: dict, where: Path) -> None:
    papers, terms, postings = entry.get("papers"), entry.get("terms"), entry.get("postings")
    ok = (len(seg.ids) == len(seg.lengths) == papers and len(seg.hashes) == terms and len(seg.indptr) == terms + 1
          and len(seg.rows) == len(seg.tfs) == postings and seg.indptr[0] == 0 and seg.indptr[-1] == postings
          and (postings == 0 or (0 <= int(seg.rows.min()) and int(seg.rows.max()) < papers)))
    if not ok:
        raise Unreadable(f"{where}: arrays disagree with each other or with the manifest")


def read_terms(folder: Path, which: str = "main") -> list[str]:
    """A saved segment's terms as text, in hash order (to inspect an index; search never needs them)."""
    entry = (read_manifest(Path(folder)) or {}).get(which)
    if not entry:
        return []
    return (Path(folder) / entry["name"] / "terms.txt").read_text(encoding="utf-8").splitlines()


def _open(folder: Path, k1: float, b: float, lazy: bool = False) -> LexicalIndex | None:
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    if manifest.get("analysis") != analysis_params():
        raise Unreadable(f"{folder} was built with another text analysis (weights, stopwords or stemmer)")
    main = _load_segment(folder, manifest.get("main"))
    delta = _load_segment(folder, manifest.get("delta"))
    return LexicalIndex(main, delta, int(manifest.get("seq", 0)), k1=k1, b=b, lazy=lazy)


def open_lexical_index(folder: str | Path, k1: float = K1, b: float = B, lazy: bool = False) -> LexicalIndex | None:
    """The saved index, or None (logged) when there is none or it cannot be used: then search falls
    back to FTS5 and the next `papersift index` rebuilds it. A sync that replaces the index while
    this reads it is retried once. `lazy`: the weights are computed on the first query, not now."""
    folder = Path(folder)
    for attempt in range(2):
        try:
            index = _open(folder, k1, b, lazy)
            if index is None:
                log.info("lexical index: none in %s", folder)
            return index
        except (Unreadable, OSError, ValueError, KeyError, TypeError) as e:
            if attempt:
                log.warning("lexical index: %s", e)
    return None


def _remove_unused(folder: Path, keep: set[str]) -> None:
    """Segments no manifest names, what crashed writes left, and files of older formats."""
    for path in folder.iterdir():
        if path.name in keep or path.name in ("CURRENT", "LOCK"):
            continue
        if path.name.startswith(("seg-", ".tmp-seg-", "CURRENT.tmp")):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextmanager
def _writer_lock(folder: Path) -> Iterator[None]:
    """One sync per folder at a time (two `papersift index` runs would otherwise race)."""
    if fcntl is None:
        yield
        return
    with open(folder / "LOCK", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- sync with the catalog -----------------------------------------------------------------------

def sync_lexical_index(store: Store, folder: str | Path, *, k1: float = K1, b: float = B) -> tuple[LexicalIndex, str]:
    """The lexical index in step with the catalog, saved under `folder`; returns it and what was done:
    "built", "up to date", "N changed" (the delta was rebuilt) or "merged (N changed)"."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    catalog = store.catalog_id()
    with _writer_lock(folder):
        # lazy here and below: `papersift index` only saves; whoever searches the result computes its weights
        index = open_lexical_index(folder, k1, b, lazy=True)
        if index is None:
            return _rebuild(store, folder, k1, b, catalog), "built"
        manifest = read_manifest(folder)
        if manifest.get("catalog") != catalog:
            # Another catalog's index (this data dir's catalog was copied to PostgreSQL, say): its row ids
            # and change_seqs are not this catalog's, so "nothing changed since seq N" would mean nothing.
            return _rebuild(store, folder, k1, b, catalog), "built (the saved index was another catalog's)"
        if next(store.texts_since(index.seq, batch=1), None) is None:
            return index, "up to date"
        return _sync_delta(store, folder, index, manifest, k1, b)


def _sync_delta(store: Store, folder: Path, index: LexicalIndex, manifest: dict,
                k1: float, b: float) -> tuple[LexicalIndex, str]:
    """Rebuild the delta from every paper changed since main was built (the last sync's included),
    or merge all into a new main once the delta outgrows MERGE_SHARE of main."""
    builder = SegmentBuilder()
    limit = MERGE_SHARE * max(len(index.main), 1)
    seq, changed = index.seq, 0
    for pid, cseq, title, abstract, authors in store.texts_since(int(manifest["main_seq"])):
        builder.add(pid, title, abstract, authors)
        changed += cseq > index.seq
        seq = max(seq, cseq)
        if len(builder) > limit:
            merged = _rebuild(store, folder, k1, b, manifest["catalog"])
            return merged, f"merged ({len(builder):,}+ changed since the last merge)"
    delta = builder.finish()
    entry = _save_segment(folder, delta)
    _write_manifest(folder, {**manifest, "delta": entry, "seq": seq,
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    _remove_unused(folder, {manifest["main"]["name"], entry["name"]})
    return LexicalIndex(index.main, delta, seq, k1=k1, b=b, lazy=True), f"{changed:,} changed"


def _rebuild(store: Store, folder: Path, k1: float, b: float, catalog: str) -> LexicalIndex:
    builder = SegmentBuilder()
    seq = 0
    for pid, cseq, title, abstract, authors in store.texts_since(0):
        builder.add(pid, title, abstract, authors)
        seq = max(seq, cseq)
    main = builder.finish()
    entry = _save_segment(folder, main)
    _write_manifest(folder, {"format": FORMAT, "analysis": analysis_params(), "main": entry, "delta": None,
                             "seq": seq, "main_seq": seq, "catalog": catalog,
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    _remove_unused(folder, {entry["name"]})
    return LexicalIndex(main, None, seq, k1=k1, b=b, lazy=True)
