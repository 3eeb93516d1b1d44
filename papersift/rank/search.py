"""Hybrid search: words (FTS5 BM25) and meaning (embeddings + vector index), fused into one ranking.

Every ranker in papersift returns `list[Hit]` best first, each with a reason. Here:
  1. a query that is an arXiv id, arXiv URL or DOI returns that paper first;
  2. the lexical list (BM25, field-weighted) and the dense list (cosine to the query embedding) are
     fetched `depth` deep, under the same filters;
  3. they are fused by weighted reciprocal rank: score = Σ w_i / (k + rank_i). Weights and k are
     parameters (`FusionParams`) tuned by bench/search_quality.py on tuning splits only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from papersift.ids import normalize_doi, parse_arxiv_id
from papersift.index.embed import Embedder
from papersift.index.vectors import VectorIndex
from papersift.models import Hit, Paper
from papersift.store.base import Store
from papersift.store.fulltext import Filters

MAX_QUERY_CHARS = 2000  # longer queries are cut (a pasted abstract is plenty)
MAX_LIMIT = 200


@dataclass(frozen=True)
class FusionParams:
    k: float = 60.0
    lexical_weight: float = 1.0
    dense_weight: float = 1.0
    depth: int = 100


def identifier_match(store: Store, query: str) -> Paper | None:
    q = query.strip()
    if parse_arxiv_id(q) is None and normalize_doi(q) is None and not q.lower().startswith("doi:"):
        return None
    try:
        return store.find_paper(q)
    except Exception:  # noqa: BLE001 - a query that only looks like an id is searched as text
        return None


def fuse(lists: list[tuple[list[int], float]], k: float) -> dict[int, float]:
    """Weighted reciprocal-rank fusion of ranked id lists: {id: score}."""
    scores: dict[int, float] = {}
    for ids, weight in lists:
        for rank, pid in enumerate(ids):
            scores[pid] = scores.get(pid, 0.0) + weight / (k + rank + 1)
    return scores


class Searcher:
    """Search over one catalog with one embedder and its vector index (either may be absent:
    then search degrades to the other signal, and says so in each hit's reason)."""

    def __init__(self, store: Store, embedder: Embedder | None = None, index: VectorIndex | None = None,
                 params: FusionParams = FusionParams()):
        self.store = store
        self.embedder = embedder
        self.index = index
        self.params = params

    def lexical(self, query: str, depth: int, filters: Filters | None) -> list[int]:
        return [pid for pid, _ in self.store.search_fulltext(query, depth, filters)]

    def dense(self, query: str, depth: int, filters: Filters | None) -> list[int]:
        if self.embedder is None or self.index is None or not len(self.index):
            return []
        vector = self.embedder.embed([query])[0]
        allowed = None
        if filters is not None and any(vars(filters).values()):
            allowed = np.asarray(self.store.filtered_ids(filters), dtype=np.int64)
            if not allowed.size:
                return []
        ids, _ = self.index.search(vector, depth, allowed=allowed)
        return [int(i) for i in np.asarray(ids).reshape(-1)]

    def search(self, query: str, *, limit: int = 20, offset: int = 0, filters: Filters | None = None) -> list[Hit]:
        query = (query or "").strip()[:MAX_QUERY_CHARS]
        limit = max(1, min(int(limit), MAX_LIMIT))
        offset = max(0, int(offset))
        if not query:
            return []
        depth = max(self.params.depth, offset + limit)
        lexical = self.lexical(query, depth, filters)
        dense = self.dense(query, depth, filters)
        scores = fuse([(lexical, self.params.lexical_weight), (dense, self.params.dense_weight)], self.params.k)
        ranked = sorted(scores, key=lambda pid: (-scores[pid], pid))
        exact = identifier_match(self.store, query)
        if exact is not None:
            scores[exact.id] = float("inf")
            ranked = [exact.id] + [pid for pid in ranked if pid != exact.id]
        page = ranked[offset:offset + limit]
        papers = {p.id: p for p in self.store.get_papers(page)}
        in_lexical, in_dense = set(lexical), set(dense)
        hits = []
        for pid in page:
            if pid not in papers:
                continue
            if exact is not None and pid == exact.id:
                reason = "the identifier you searched for"
            elif pid in in_lexical and pid in in_dense:
                reason = "matches your words and their meaning"
            elif pid in in_lexical:
                reason = "matches your words"
            else:
                reason = "close in meaning"
            hits.append(Hit(papers[pid].ref, scores[pid], reason))
        return hits
