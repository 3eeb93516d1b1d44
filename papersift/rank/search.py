"""Hybrid search: words (FTS5 BM25) and meaning (embeddings + vector index), fused into one ranking.

Every ranker in papersift returns `list[Hit]` best first, each with a reason. Here:
  1. a query that is an arXiv id, arXiv URL or DOI returns that paper first;
  2. a typed query's misspelt words (`trasformer`) are corrected from the catalog's own vocabulary;
     the page says so ("showing results for …");
  3. the lexical list (BM25, field-weighted: index/lexical.py in memory, or FTS5 for phrases and
     prefixes) and the dense list (cosine to the query embedding) are
     fetched `depth` deep, under the same filters;
  4. they are fused by a convex combination of normalised scores (`FusionParams`):
     score = w_lex · bm25 / max bm25 + w_dense · cosine / max cosine, 0 for a paper missing from a
     list. Unlike reciprocal-rank fusion it keeps how far apart the scores are, not only their order.
     The method and weights were chosen on a tuning split carved from SciFact's training claims
     (bench/search_scifact.py) and checked on the other claims and on ACM-CR; `method="rrf"` keeps
     reciprocal-rank fusion available as the baseline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from papersift.ids import fold, normalize_doi, parse_arxiv_id
from papersift.index.embed import Embedder
from papersift.index.lexical import LexicalIndex, handles
from papersift.index.vectors import VectorIndex
from papersift.models import Hit, Paper
from papersift.store.base import Store
from papersift.store.fulltext import Filters, pasted
from papersift.store.spelling import corrected

MAX_QUERY_CHARS = 2000  # longer queries are cut (a pasted abstract is plenty)
MAX_LIMIT = 200
# A query over fulltext.TYPED_MAX_WORDS words was pasted (an abstract, a paragraph of a draft), not
# typed (fulltext.pasted): its typos don't matter among so many words (no spelling check), its quotes
# and stars are punctuation (BM25, not FTS5 phrases), and its numbered citation marks ("[12]",
# "[4, 7–9]") point into the writer's bibliography, so they are dropped. The embedder sees as much of it
# as it takes (256 tokens for MiniLM): cutting a paragraph to its first 90 words for speed cost ACM-CR's
# citation contexts 0.03 Recall@10 on the dense side.
CITATION_MARKS = re.compile(r"\s*\[\s*\d[\d\s,;–-]*\]")

# A query of 3–40 words that is, word for word, the title of one of the best few lexical hits is a
# search for that paper (a reader pasting a title they saw cited): it goes first, as an identifier does.
# Fusion alone can put a close neighbour first when the paper's abstract strays from its title
# (bench/freshness.py: 1 of 250 new papers, lost by 0.003).
TITLE_CHECK = 3
TITLE_WORDS = (3, 40)

Ranked = list[tuple[int, float]]  # (paper id, score), best first


@dataclass(frozen=True)
class FusionParams:
    method: str = "convex"  # "convex" (normalised score combination) or "rrf" (reciprocal rank)
    lexical_weight: float = 0.55
    dense_weight: float = 0.45
    k: float = 60.0  # RRF's rank offset (method="rrf" only)
    depth: int = 100


# The static tier (index/static.py) is a much weaker dense signal than MiniLM: tuned the same way it
# earns a small weight (SciFact tuning split: dense adds nothing at 0.2, and at 0.5 it costs 0.05).
FUSION_BY_MODEL = {"all-MiniLM-L6-v2-static": FusionParams(lexical_weight=0.8, dense_weight=0.2)}


@dataclass
class SearchPage:
    hits: list[Hit]
    corrections: dict[str, str] = field(default_factory=dict)  # typed word → the word searched instead
    query: str = ""  # what was searched, after corrections


def without_citation_marks(text: str) -> str:
    """A pasted paragraph without its numbered citation marks: "as in [4, 7–9]." → "as in." """
    return CITATION_MARKS.sub("", text).strip()


def identifier_match(store: Store, query: str) -> Paper | None:
    q = query.strip()
    if parse_arxiv_id(q) is None and normalize_doi(q) is None and not q.lower().startswith("doi:"):
        return None
    try:
        return store.find_paper(q)
    except Exception:  # noqa: BLE001 - a query that only looks like an id is searched as text
        return None


def title_match(store: Store, query: str, lexical: Ranked) -> Paper | None:
    """The paper among the first TITLE_CHECK lexical hits whose title is the query, word for word."""
    if not lexical or not TITLE_WORDS[0] <= len(query.split()) <= TITLE_WORDS[1]:
        return None
    want = fold(query)  # case, accents, spaces and punctuation aside
    if not want:
        return None
    return next((p for p in store.get_papers([pid for pid, _ in lexical[:TITLE_CHECK]])
                 if fold(p.title) == want), None)


def fuse(lists: list[tuple[list[int], float]], k: float) -> dict[int, float]:
    """Weighted reciprocal-rank fusion of ranked id lists: {id: score}."""
    scores: dict[int, float] = {}
    for ids, weight in lists:
        for rank, pid in enumerate(ids):
            scores[pid] = scores.get(pid, 0.0) + weight / (k + rank + 1)
    return scores


def normalised(ranked: Ranked) -> dict[int, float]:
    """Scores of one ranked list over its best: best → 1, a score of 0 → 0 (negatives count as 0).

    "Theoretical min-max" (Bruch, Gai & Ingber, 2023): the lower end is the score's floor (0 for BM25
    and, in practice, for cosine), not the list's own last score, so how far a list's tail falls
    below its head is kept, and a weak list stays weak after normalising. It beat list min-max and
    z-scores on the tuning split."""
    if not ranked:
        return {}
    high = max(s for _, s in ranked)
    if high <= 0:
        return {pid: 0.0 for pid, _ in ranked}
    return {pid: max(s, 0.0) / high for pid, s in ranked}


def combine(lists: list[tuple[Ranked, float]]) -> dict[int, float]:
    """Convex combination of normalised score lists: {id: Σ w_i · norm_i(id)}."""
    scores: dict[int, float] = {}
    for ranked, weight in lists:
        for pid, s in normalised(ranked).items():
            scores[pid] = scores.get(pid, 0.0) + weight * s
    return scores


def fused_scores(lexical: Ranked, dense: Ranked, params: FusionParams) -> dict[int, float]:
    if params.method == "rrf":
        return fuse([([p for p, _ in lexical], params.lexical_weight), ([p for p, _ in dense], params.dense_weight)],
                    params.k)
    return combine([(lexical, params.lexical_weight), (dense, params.dense_weight)])


class Searcher:
    """Search over one catalog with one embedder and its vector index (either may be absent:
    then search degrades to the other signal, and says so in each hit's reason)."""

    def __init__(self, store: Store, embedder: Embedder | None = None, index: VectorIndex | None = None,
                 params: FusionParams | None = None, bm25: LexicalIndex | None = None):
        self.store = store
        self.embedder = embedder
        self.index = index
        if params is None:
            params = FUSION_BY_MODEL.get(getattr(embedder, "name", ""), FusionParams())
        self.params = params
        self.bm25 = bm25

    def _allowed(self, filters: Filters | None) -> np.ndarray | None:
        if filters is None or not any(vars(filters).values()):
            return None
        return np.asarray(self.store.filtered_ids(filters), dtype=np.int64)

    def lexical(self, query: str, depth: int, filters: Filters | None) -> Ranked:
        """BM25 from the in-memory index; phrases, prefixes, or no such index: the catalog's FTS5. A pasted
        text (fulltext.pasted) stays on BM25 whatever quotes or stars it holds: they are its
        punctuation, not phrase syntax, and FTS5 takes ~0.1-0.5 s over such a query."""
        if self.bm25 is None or not (handles(query) or pasted(query)):
            return self.store.search_fulltext(query, depth, filters)
        allowed = self._allowed(filters)
        if allowed is not None and not allowed.size:
            return []
        return self.bm25.search(query, depth, allowed)

    def dense(self, query: str, depth: int, filters: Filters | None) -> Ranked:
        if self.embedder is None or self.index is None or not len(self.index):
            return []
        allowed = self._allowed(filters)
        if allowed is not None and not allowed.size:
            return []
        vector = self.embedder.embed([query])[0]
        ids, scores = self.index.search(vector, depth, allowed=allowed)
        return [(int(i), float(s)) for i, s in zip(np.asarray(ids).reshape(-1), np.asarray(scores).reshape(-1))]

    def search(self, query: str, *, limit: int = 20, offset: int = 0, filters: Filters | None = None) -> list[Hit]:
        return self.search_page(query, limit=limit, offset=offset, filters=filters).hits

    def search_page(self, query: str, *, limit: int = 20, offset: int = 0,
                    filters: Filters | None = None) -> SearchPage:
        query = (query or "").strip()[:MAX_QUERY_CHARS]
        limit = max(1, min(int(limit), MAX_LIMIT))
        offset = max(0, int(offset))
        if not query:
            return SearchPage([], query="")
        exact = identifier_match(self.store, query)
        typed = exact is None and not pasted(query)
        fixes = self.store.spelling_corrections(query) if typed else {}
        searched = corrected(query, fixes) if typed else (without_citation_marks(query) or query)
        depth = max(self.params.depth, offset + limit)
        lexical = self.lexical(searched, depth, filters)
        dense = self.dense(searched, depth, filters)
        scores = fused_scores(lexical, dense, self.params)
        ranked = sorted(scores, key=lambda pid: (-scores[pid], pid))
        titled = title_match(self.store, searched, lexical) if exact is None else None
        first = exact or titled
        if first is not None:
            scores[first.id] = float("inf")
            ranked = [first.id] + [pid for pid in ranked if pid != first.id]
        page = ranked[offset:offset + limit]
        papers = {p.id: p for p in self.store.get_papers(page)}
        in_lexical, in_dense = {p for p, _ in lexical}, {p for p, _ in dense}
        hits = []
        for pid in page:
            if pid in papers:
                reason = _reason(pid, exact, titled, in_lexical, in_dense)
                hits.append(Hit(papers[pid].ref, scores[pid], reason, papers[pid]))
        return SearchPage(hits, fixes, searched)


def _reason(pid: int, exact: Paper | None, titled: Paper | None, in_lexical: set[int], in_dense: set[int]) -> str:
    if exact is not None and pid == exact.id:
        return "the identifier you searched for"
    if titled is not None and pid == titled.id:
        return "the title you searched for"
    if pid in in_lexical and pid in in_dense:
        return "matches your words and their meaning"
    if pid in in_lexical:
        return "matches your words"
    return "close in meaning"
